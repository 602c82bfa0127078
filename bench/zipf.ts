/**
 * Input generation for the bench: a seeded PRNG, a Zipf sampler (precomputed CDF + binary
 * search) and a vocabulary of distinct pseudo-words. Everything here runs before any timed
 * section, and the same seed gives the same input to the runtime and to the baselines.
 */

import { mulberry32 } from '../examples/word-count/typist.js';

/** mulberry32 (the demo's typist uses the same): a small, fast, seeded 32-bit PRNG; floats in [0, 1). */
export const prng = mulberry32;

/** Samples ranks 0..n-1 with P(rank k) ∝ 1 / (k+1)^skew. */
export class ZipfSampler {
  private readonly cdf: Float64Array;

  constructor(readonly n: number, readonly skew: number, private readonly random: () => number) {
    this.cdf = new Float64Array(n);
    let sum = 0;
    for (let k = 0; k < n; k++) this.cdf[k] = sum += 1 / Math.pow(k + 1, skew);
    for (let k = 0; k < n; k++) this.cdf[k] /= sum;
    this.cdf[n - 1] = 1;
  }

  next(): number {
    const u = this.random();
    let lo = 0;
    let hi = this.n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** Bijective base-26 spelling of i (0 → "a", 25 → "z", 26 → "aa", …). */
function spell(i: number): string {
  let s = '';
  let n = i + 1;
  while (n > 0) {
    n--;
    s = String.fromCharCode(97 + (n % 26)) + s;
    n = Math.floor(n / 26);
  }
  return s;
}

/**
 * `n` distinct lower-case pseudo-words of 3–6 letters. Rank order is a seeded shuffle of the
 * spellings, so the most frequent words are not simply the shortest ones.
 */
export function vocabulary(n: number, seed = 7): string[] {
  const ids = Array.from({ length: n }, (_, i) => i);
  const random = prng(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [ids[i], ids[j]] = [ids[j], ids[i]];
  }
  return ids.map((id) => spell(id + 26 * 26 + 26)); // skip the 1- and 2-letter spellings
}

/** `count` words drawn from `vocab` with Zipf(skew) frequencies by rank. */
export function zipfWords(vocab: readonly string[], count: number, skew: number, seed: number): string[] {
  const sampler = new ZipfSampler(vocab.length, skew, prng(seed));
  const out = new Array<string>(count);
  for (let i = 0; i < count; i++) out[i] = vocab[sampler.next()];
  return out;
}

/** Cuts `records` into consecutive batches of `size` (the last may be shorter). */
export function batches<T>(records: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < records.length; i += size) out.push(records.slice(i, i + size));
  return out;
}
