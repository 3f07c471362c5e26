import { CdcError } from '../errors.ts';

/**
 * A replay or offsets request that cannot be carried out as asked: an unknown topic or partition,
 * a range that makes no sense. Asking again unchanged gives the same answer.
 */
export class OffsetsRequestError extends CdcError {
  constructor(message: string, code: string) {
    super(message, { code, retriable: false });
  }
}

/**
 * The group has live members, whose own positions would overwrite (or race) any offsets set now.
 * Not retriable: a running router stays in its group until an operator stops it.
 */
export class GroupActiveError extends CdcError {
  readonly groupId: string;
  readonly state: string;
  readonly members: number;
  constructor(groupId: string, state: string, members: number) {
    super(
      `group ${groupId} is active (state ${state}, ${members} member(s)): stop every cdc-router of this group, then reset its offsets`,
      { code: 'GROUP_ACTIVE', retriable: false },
    );
    this.groupId = groupId;
    this.state = state;
    this.members = members;
  }
}
