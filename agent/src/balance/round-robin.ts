// Per-connection endpoint choice for the L4 path: round robin per service port, so new
// connections spread evenly and a changed endpoint set takes effect on the next connection.

export class RoundRobin {
  readonly #next = new Map<string, number>();

  pick<T>(key: string, endpoints: readonly T[]): T | undefined {
    if (endpoints.length === 0) return undefined;
    const index = (this.#next.get(key) ?? 0) % endpoints.length;
    this.#next.set(key, index + 1);
    return endpoints[index];
  }
}
