// kstatus: prints the kstatus result (Current, InProgress, Failed, ...) and message of Kubernetes objects given as
// JSON on stdin (one object or a List), computed the way Flux's health checks compute it (github.com/fluxcd/cli-utils).
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kstatus:", err)
	os.Exit(2)
}

func main() {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	var probe struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		fail(err)
	}
	raws := probe.Items
	if raws == nil {
		raws = []json.RawMessage{data}
	}
	for _, raw := range raws {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil {
			fail(err)
		}
		res, err := status.Compute(u)
		if err != nil {
			fail(err)
		}
		fmt.Printf("%s/%s\t%s\t%s\n", u.GetKind(), u.GetName(), res.Status, res.Message)
	}
}
