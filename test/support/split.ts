// Splitting a buffer at arbitrary points, for the property tests that feed a parser or an encoder in chunks and check
// that chunk boundaries never change the result.
//
// Exports: splitAt(input, cuts) -> the non-empty consecutive pieces of input between the cut points (each cut taken
// modulo input.length + 1, duplicates dropped); [] for an empty input.
export function splitAt(input: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (input.length + 1)))].sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let from = 0;
  for (const p of [...points, input.length]) {
    if (p > from) pieces.push(input.subarray(from, p));
    from = Math.max(from, p);
  }
  return pieces;
}
