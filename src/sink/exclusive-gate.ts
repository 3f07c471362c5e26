/**
 * Shared/exclusive sections for a sink's writes: ordinary writes run side by side; an exclusive one
 * (a truncate; every append of the file sink) waits for those in progress, and holds back new ones
 * until it is done. Written here
 * because the need is a few lines over promises; a lock library would bring far more.
 */
export class ExclusiveGate {
  private shared = 0;
  private drained: (() => void)[] = [];
  private exclusive: Promise<void> | undefined;

  async runShared<T>(fn: () => Promise<T>): Promise<T> {
    while (this.exclusive) await this.exclusive;
    this.shared++;
    try {
      return await fn();
    } finally {
      if (--this.shared === 0) for (const wake of this.drained.splice(0)) wake();
    }
  }

  async runExclusive<T>(fn: () => Promise<T>): Promise<T> {
    while (this.exclusive) await this.exclusive;
    let release!: () => void;
    this.exclusive = new Promise<void>((r) => (release = r));
    try {
      while (this.shared > 0) await new Promise<void>((r) => this.drained.push(r));
      return await fn();
    } finally {
      this.exclusive = undefined;
      release();
    }
  }
}
