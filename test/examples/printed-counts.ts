/** Every "Word <w>, count <n>" line the word-count examples print, per word, in the order printed. */
export function countsByWord(output: string): Map<string, number[]> {
  const byWord = new Map<string, number[]>();
  for (const [, word, n] of output.matchAll(/^Word (\S+), count (\d+)$/gm)) byWord.set(word, [...(byWord.get(word) ?? []), Number(n)]);
  return byWord;
}
