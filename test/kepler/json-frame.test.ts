import { describe, expect, it } from 'vitest';
import { JsonFrame } from '../../src/kepler/json-frame.js';

const bytes = (text: string) => new TextEncoder().encode(text);

describe('finding the end of a JSON request in a byte stream', () => {
  it('ends at the brace that closes the top-level object', () => {
    expect(new JsonFrame().push(bytes('{"a":[1,{"b":2}]}trailing'))).toBe(17);
  });

  it('waits for more across chunks, whatever the split', () => {
    const text = '{"metrics":["x"],"values":[[1,2]],"s":"br}ace\\"q"}';
    for (let split = 1; split < text.length; split++) {
      const frame = new JsonFrame();
      expect(frame.push(bytes(text.slice(0, split)))).toBe(-1);
      expect(frame.push(bytes(text.slice(split)))).toBe(text.length - split);
    }
  });

  it('ignores braces inside strings, escaped quotes and multi-byte characters', () => {
    const text = '{"k":"} ] \\" { ✓ ünïcode"}';
    expect(new JsonFrame().push(bytes(text))).toBe(bytes(text).length);
  });

  it('skips leading whitespace and refuses anything but an object', () => {
    expect(new JsonFrame().push(bytes(' \n{}'))).toBe(4);
    expect(() => new JsonFrame().push(bytes('[1,2]'))).toThrow('not a JSON object');
    expect(() => new JsonFrame().push(bytes('GET / HTTP/1.1'))).toThrow('not a JSON object');
  });
});
