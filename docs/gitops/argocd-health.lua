-- Argo CD health check for mailroute.io objects (MailDomain, DeliveryPolicy, TestRecipient).
-- Install it under resource.customizations.health.mailroute.io_<Kind> in argocd-cm (see docs/gitops.md).
-- Argo CD runs it with gopher-lua (Lua 5.1): keep to Lua 5.1 syntax. Tested with lua5.1 and lua5.4 by
-- test/helm/argocd-health.test.ts against sample statuses.
local hs = {}

local function condition(conditions, ctype)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function describe(c)
  local text = c.type
  if c.reason ~= nil and c.reason ~= "" then
    text = text .. " (" .. c.reason .. ")"
  end
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local status = obj.status
if status == nil or status.conditions == nil or #status.conditions == 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for the mailroute operator to report status"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the mailroute operator to process generation " .. tostring(generation)
  return hs
end

-- A problem with the object itself (invalid, in conflict, a missing reference) will not fix itself.
for _, ctype in ipairs({ "Accepted", "ResolvedRefs" }) do
  local c = condition(status.conditions, ctype)
  if c ~= nil and c.status == "False" then
    hs.status = "Degraded"
    hs.message = describe(c)
    return hs
  end
end

-- An expired TestRecipient is done: it routes like any other recipient now.
local active = condition(status.conditions, "Active")
if active ~= nil and active.status == "False" then
  hs.status = "Suspended"
  hs.message = describe(active)
  return hs
end

local ready = condition(status.conditions, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  return hs
end

-- Accepted, but the relays do not all serve it yet ("1/3 relays programmed").
local programmed = condition(status.conditions, "Programmed")
if programmed ~= nil and programmed.status ~= "True" then
  hs.status = "Progressing"
  hs.message = describe(programmed)
  return hs
end

if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(ready)
  return hs
end

hs.status = "Progressing"
hs.message = "Waiting for the Ready condition"
return hs
