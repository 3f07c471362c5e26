/**
 * Walks JSON text without building values. Used off the hot path: to find where a value ends (the
 * schema block's extent, once per schema; the raw members of a CLI input line) and to point at the
 * first syntax error, because V8's JSON.parse messages do not always carry a position and they quote
 * the whole input, which can be megabytes of row data.
 */

export interface JsonSyntaxProblem {
  /** UTF-16 index into the text. */
  readonly position: number;
  readonly problem: string;
}

/** A member of a top-level object as [start, end) indexes of its raw value text. */
export interface MemberSpan {
  readonly start: number;
  readonly end: number;
}

class Scanner {
  pos: number;
  problem: string | undefined;
  private readonly text: string;

  constructor(text: string, pos: number) {
    this.text = text;
    this.pos = pos;
  }

  skipWhitespace(): void {
    const t = this.text;
    let p = this.pos;
    for (;;) {
      const c = t.charCodeAt(p);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) p++;
      else break;
    }
    this.pos = p;
  }

  fail(problem: string): false {
    this.problem = problem;
    return false;
  }

  unexpected(): false {
    const c = this.text.charCodeAt(this.pos);
    if (Number.isNaN(c)) return this.fail('unexpected end of input');
    const shown = c >= 0x20 && c < 0x7f ? `'${String.fromCharCode(c)}'` : `U+${c.toString(16).padStart(4, '0')}`;
    return this.fail(`unexpected character ${shown}`);
  }

  value(): boolean {
    this.skipWhitespace();
    const c = this.text.charCodeAt(this.pos);
    if (c === 0x7b) return this.object();
    if (c === 0x5b) return this.array();
    if (c === 0x22) return this.string();
    if (c === 0x74) return this.word('true');
    if (c === 0x66) return this.word('false');
    if (c === 0x6e) return this.word('null');
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.number();
    return this.unexpected();
  }

  /** Reads `"name":` and leaves pos at the member's value; returns the name's [start, end). */
  memberName(): [number, number] | undefined {
    this.skipWhitespace();
    if (this.text.charCodeAt(this.pos) !== 0x22) {
      this.fail('expected a property name in double quotes');
      return undefined;
    }
    const start = this.pos;
    if (!this.string()) return undefined;
    const end = this.pos;
    this.skipWhitespace();
    if (this.text.charCodeAt(this.pos) !== 0x3a) {
      this.fail("expected ':' after a property name");
      return undefined;
    }
    this.pos++;
    return [start, end];
  }

  /** After a member or element: true to continue with ',' false when `close` ended the container. */
  separator(close: number, what: string): boolean | undefined {
    this.skipWhitespace();
    const c = this.text.charCodeAt(this.pos);
    if (c === 0x2c) {
      this.pos++;
      return true;
    }
    if (c === close) {
      this.pos++;
      return false;
    }
    this.fail(`expected ',' or '${String.fromCharCode(close)}' after ${what}`);
    return undefined;
  }

  object(): boolean {
    this.pos++;
    this.skipWhitespace();
    if (this.text.charCodeAt(this.pos) === 0x7d) {
      this.pos++;
      return true;
    }
    for (;;) {
      if (!this.memberName()) return false;
      if (!this.value()) return false;
      const more = this.separator(0x7d, 'a property value');
      if (more === undefined) return false;
      if (!more) return true;
    }
  }

  array(): boolean {
    this.pos++;
    this.skipWhitespace();
    if (this.text.charCodeAt(this.pos) === 0x5d) {
      this.pos++;
      return true;
    }
    for (;;) {
      if (!this.value()) return false;
      const more = this.separator(0x5d, 'an array element');
      if (more === undefined) return false;
      if (!more) return true;
    }
  }

  string(): boolean {
    const t = this.text;
    let p = this.pos + 1;
    for (;;) {
      const c = t.charCodeAt(p);
      if (Number.isNaN(c)) {
        this.pos = p;
        return this.fail('unterminated string');
      }
      if (c === 0x22) {
        this.pos = p + 1;
        return true;
      }
      if (c < 0x20) {
        this.pos = p;
        return this.fail('control character in string');
      }
      if (c === 0x5c) {
        const e = t.charCodeAt(p + 1);
        if (e === 0x75) {
          if (!/^[0-9A-Fa-f]{4}$/.test(t.slice(p + 2, p + 6))) {
            this.pos = p;
            return this.fail('bad \\u escape in string');
          }
          p += 6;
          continue;
        }
        // " \ / b f n r t
        if (e === 0x22 || e === 0x5c || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) {
          p += 2;
          continue;
        }
        this.pos = p;
        return this.fail('bad escape in string');
      }
      p++;
    }
  }

  number(): boolean {
    const t = this.text;
    if (t.charCodeAt(this.pos) === 0x2d) this.pos++;
    const first = t.charCodeAt(this.pos);
    if (first === 0x30) this.pos++;
    else if (first >= 0x31 && first <= 0x39) this.digits();
    else return this.fail(Number.isNaN(first) ? 'unexpected end of input' : 'expected a digit');
    if (t.charCodeAt(this.pos) === 0x2e) {
      this.pos++;
      if (!this.digits()) return this.fail('expected a digit after the decimal point');
    }
    const e = t.charCodeAt(this.pos);
    if (e === 0x65 || e === 0x45) {
      this.pos++;
      const s = t.charCodeAt(this.pos);
      if (s === 0x2b || s === 0x2d) this.pos++;
      if (!this.digits()) return this.fail('expected a digit in the exponent');
    }
    return true;
  }

  digits(): boolean {
    const start = this.pos;
    const t = this.text;
    for (;;) {
      const c = t.charCodeAt(this.pos);
      if (c >= 0x30 && c <= 0x39) this.pos++;
      else break;
    }
    return this.pos > start;
  }

  word(w: string): boolean {
    if (this.text.startsWith(w, this.pos)) {
      this.pos += w.length;
      return true;
    }
    return this.unexpected();
  }
}

/** Index just past the JSON value that starts at `start` (leading whitespace allowed), or -1. */
export function jsonValueEnd(text: string, start: number): number {
  const s = new Scanner(text, start);
  try {
    return s.value() ? s.pos : -1;
  } catch {
    // Nesting deep enough to overflow the stack: treat as not scannable.
    return -1;
  }
}

/** The first syntax error of a JSON document, or undefined when the text is valid JSON. */
export function locateJsonError(text: string): JsonSyntaxProblem | undefined {
  const s = new Scanner(text, 0);
  try {
    if (s.value()) {
      s.skipWhitespace();
      if (s.pos === text.length) return undefined;
      s.fail('unexpected text after the JSON value');
    }
  } catch {
    return { position: 0, problem: 'nested too deeply to locate the error' };
  }
  return { position: s.pos, problem: s.problem ?? 'syntax error' };
}

/** "unexpected character '}' at position 5", for error messages. */
export function describeJsonError(text: string): string {
  const p = locateJsonError(text);
  return p ? `${p.problem} at position ${p.position}` : 'syntax error';
}

/**
 * Raw value spans of a top-level JSON object's members, so that a caller can take a member's exact
 * text (numbers beyond 2^53 included) instead of re-serializing a parsed value. Undefined when the
 * text is not a JSON object. Later duplicates win, as in JSON.parse.
 */
export function objectMemberSpans(text: string): Map<string, MemberSpan> | undefined {
  const s = new Scanner(text, 0);
  const spans = new Map<string, MemberSpan>();
  try {
    s.skipWhitespace();
    if (text.charCodeAt(s.pos) !== 0x7b) return undefined;
    s.pos++;
    s.skipWhitespace();
    if (text.charCodeAt(s.pos) === 0x7d) return spans;
    for (;;) {
      const name = s.memberName();
      if (!name) return undefined;
      s.skipWhitespace();
      const start = s.pos;
      if (!s.value()) return undefined;
      spans.set(JSON.parse(text.slice(name[0], name[1])) as string, { start, end: s.pos });
      const more = s.separator(0x7d, 'a property value');
      if (more === undefined) return undefined;
      if (!more) return spans;
    }
  } catch {
    return undefined;
  }
}
