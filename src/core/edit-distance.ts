/**
 * "Did you mean" suggestions for misspelled names (config keys, CLI flags, options, transforms,
 * presets): the Levenshtein distance, the closest candidate, and when a candidate is close enough
 * to be a plausible typo.
 */

/** Levenshtein distance: the fewest insertions, deletions and substitutions turning `a` into `b`. */
export function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = row[j]!;
      row[j] = Math.min(up + 1, row[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return row[b.length]!;
}

/** The candidate closest to `name` by case-insensitive edit distance (the first one on ties). */
export function closestName(name: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(name.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

/** Whether `distance` from a name to `candidate` is small enough to suggest it: at most max(2, a third of its length). */
export function isPlausibleTypo(distance: number, candidate: string): boolean {
  return distance <= Math.max(2, Math.floor(candidate.length / 3));
}
