/** Scalar keys as they are; tuple keys by their JSON text, in a map of their own so they never meet a string key. */
export class KeyedMap<V> {
  private readonly scalars = new Map<unknown, V>();
  private readonly tuples = new Map<string, V>();

  get size(): number {
    return this.scalars.size + this.tuples.size;
  }

  get(key: unknown): V | undefined {
    return Array.isArray(key) ? this.tuples.get(JSON.stringify(key)) : this.scalars.get(key);
  }

  set(key: unknown, value: V): void {
    if (Array.isArray(key)) this.tuples.set(JSON.stringify(key), value);
    else this.scalars.set(key, value);
  }

  delete(key: unknown): boolean {
    return Array.isArray(key) ? this.tuples.delete(JSON.stringify(key)) : this.scalars.delete(key);
  }

  /** Each key as it was set (a tuple key parsed back from its JSON text) with its value. */
  *entries(): Generator<[unknown, V]> {
    yield* this.scalars.entries();
    for (const [text, value] of this.tuples) yield [JSON.parse(text) as unknown, value];
  }

  *values(): Generator<V> {
    yield* this.scalars.values();
    yield* this.tuples.values();
  }
}
