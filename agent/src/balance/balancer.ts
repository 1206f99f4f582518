// The small interface every per-request balancer implements, and what it is lent.
/** What a balancer sees of one endpoint; the EndpointSet keeps these values live. */
export interface BalancedEndpoint {
  /** "ip:port" */
  readonly key: string;
  /** Position in the list last given to setEndpoints. */
  readonly index: number;
  /** Requests in flight to this endpoint. */
  readonly outstanding: number;
  /** Peak-EWMA latency estimate in ms at `now`. */
  rttEstimateMs(now: number): number;
}

/** What the EndpointSet lends a balancer: its clock and randomness, injectable for tests. */
export interface BalancerHelper {
  now(): number;
  /** Uniform in [0, 1). */
  random(): number;
}

export interface LoadBalancer<T extends BalancedEndpoint> {
  /** Every endpoint of the destination, in index order; called after each config update. */
  setEndpoints(endpoints: readonly T[]): void;
  /**
   * Chooses one of `candidates`: a non-empty subset of the endpoints, in index order, already
   * without ejected endpoints and those the request tried before (when others are left).
   */
  pick(candidates: readonly T[], hashKey: string | undefined): T;
}
