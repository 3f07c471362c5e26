/**
 * Tracks, for one partition, which records are finished: acknowledged by every sink they were
 * routed to, filtered out, skipped by rule, or dead-lettered. The commit point is the first
 * unfinished offset (Kafka commits "the next offset to read"), so a commit never passes a record
 * that some sink has not acknowledged, whatever order acknowledgements arrive in.
 */
export class PartitionTracker {
  /** Offsets in fetch order with their remaining acknowledgements (0 = finished). */
  private readonly offsets: bigint[] = [];
  private readonly remaining = new Map<bigint, number>();
  private head = 0;
  private lastTracked: bigint | undefined;

  /** Registers a record that needs `acks` acknowledgements (0: finished already). */
  track(offset: bigint, acks: number): void {
    if (this.lastTracked !== undefined && offset <= this.lastTracked) {
      throw new RangeError(`offset ${offset} tracked out of order (last ${this.lastTracked})`);
    }
    this.offsets.push(offset);
    this.remaining.set(offset, acks);
    this.lastTracked = offset;
  }

  /** Adds one acknowledgement to a record; returns true when that finished it. */
  ack(offset: bigint): boolean {
    const left = this.remaining.get(offset);
    if (left === undefined || left === 0) return false;
    this.remaining.set(offset, left - 1);
    return left === 1;
  }

  /** Marks a record finished whatever acknowledgements are missing (dead-lettered, skipped). */
  finish(offset: bigint): void {
    if (this.remaining.has(offset)) this.remaining.set(offset, 0);
  }

  isFinished(offset: bigint): boolean {
    return this.remaining.get(offset) === 0;
  }

  /**
   * The offset to commit (next to read) given everything finished so far, or undefined when
   * nothing new is finished. Drops the finished prefix from memory.
   */
  commitPoint(): bigint | undefined {
    const start = this.head;
    while (this.head < this.offsets.length && this.remaining.get(this.offsets[this.head]!) === 0) {
      this.remaining.delete(this.offsets[this.head]!);
      this.head++;
    }
    if (this.head === start) return undefined;
    const point = this.head < this.offsets.length ? this.offsets[this.head]! : this.lastTracked! + 1n;
    if (this.head > 1024) {
      this.offsets.splice(0, this.head);
      this.head = 0;
    }
    return point;
  }

  /** The first unfinished offset, if any. */
  firstUnfinished(): bigint | undefined {
    for (let i = this.head; i < this.offsets.length; i++) {
      const o = this.offsets[i]!;
      if (this.remaining.get(o) !== 0) return o;
    }
    return undefined;
  }

  get pending(): number {
    return this.offsets.length - this.head;
  }
}
