/** mulberry32: a tiny seeded PRNG, so the same --seed types the same words. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Few letters and lengths (20 distinct words) so counts climb past 10 within a short demo.
const LETTERS = 'ABCD';
const MAX_LENGTH = 5;
const MAX_WORDS_PER_LINE = 5;

/**
 * Types lines the way the article's console producer was fed: words made of one repeated
 * capital letter (AAAA BB CCCCC). Returns a function giving the next `n` lines.
 */
export function createTypist(seed: number): (n?: number) => string[] {
  const random = mulberry32(seed);
  const between = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
  const word = () => LETTERS[between(0, LETTERS.length - 1)].repeat(between(1, MAX_LENGTH));
  const line = () => Array.from({ length: between(1, MAX_WORDS_PER_LINE) }, word).join(' ');
  return (n = 1) => Array.from({ length: n }, line);
}
