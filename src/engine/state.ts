import { StateContractError } from '../errors.js';

/** The handle a mapping function gets for its key's state: Spark's `State[S]`. */
export interface State<S> {
  exists(): boolean;
  /** The state; throws when there is none. */
  get(): S;
  getOption(): S | undefined;
  update(newState: S): void;
  remove(): void;
  isTimingOut(): boolean;
}

/**
 * One instance is reused for every record of a shard (Spark's StateImpl does the same),
 * so the mapping loop allocates nothing per record for it.
 */
export class StateHandle<S> implements State<S> {
  private state: S | undefined = undefined;
  private defined = false;
  private timingOut = false;
  private updated = false;
  private removed = false;
  private key: unknown = undefined;

  wrap(key: unknown, state: S | undefined, defined: boolean): void {
    this.key = key;
    this.state = state;
    this.defined = defined;
    this.timingOut = false;
    this.updated = false;
    this.removed = false;
  }

  wrapTimingOut(key: unknown, state: S): void {
    this.wrap(key, state, true);
    this.timingOut = true;
  }

  exists(): boolean {
    return this.defined;
  }

  get(): S {
    if (!this.defined) throw new StateContractError(`State.get(): no state exists for key ${String(this.key)}; check exists() or use getOption()`, { key: this.key });
    return this.state as S;
  }

  getOption(): S | undefined {
    return this.defined ? this.state : undefined;
  }

  update(newState: S): void {
    if (this.removed) throw new StateContractError(`State.update(): cannot update the state of key ${String(this.key)} after it has been removed`, { key: this.key });
    if (this.timingOut) throw new StateContractError(`State.update(): cannot update the state of key ${String(this.key)} while it is timing out`, { key: this.key });
    if (newState === undefined) throw new StateContractError(`State.update(): the new state of key ${String(this.key)} is undefined; call remove() to delete a state`, { key: this.key });
    this.state = newState;
    this.defined = true;
    this.updated = true;
  }

  remove(): void {
    if (this.timingOut) throw new StateContractError(`State.remove(): cannot remove the state of key ${String(this.key)} while it is timing out; it is removed after this call`, { key: this.key });
    if (this.removed) throw new StateContractError(`State.remove(): the state of key ${String(this.key)} has already been removed`, { key: this.key });
    // A key without state may be removed (Spark's StateImpl allows it): a reset that does not ask whether there is anything to reset.
    this.defined = false;
    this.updated = false;
    this.removed = true;
    this.state = undefined;
  }

  isTimingOut(): boolean {
    return this.timingOut;
  }

  isUpdated(): boolean {
    return this.updated;
  }

  isRemoved(): boolean {
    return this.removed;
  }
}
