/**
 * A guard on the generators: what the issue asks the fuzz to send does come up (a generator that
 * quietly stopped making BOMs or `..` entries would leave its properties passing and worthless).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FEATURES } from '../helpers.js';
import { csvBody, jsonLinesBody, predictBody } from './arbitraries.js';
import { archiveSpec } from './archives.js';

const sample = <T>(arbitrary: fc.Arbitrary<T>) => fc.sample(arbitrary, { numRuns: 500, seed: 7 });
const nonAscii = (s: string) => [...s].some((char) => (char.codePointAt(0) ?? 0) > 0x7f);

describe('fuzz generators', () => {
  it('JSON bodies: BOMs, CRLF, unicode, huge numbers, deep nesting, duplicate and pollution keys, mostly valid JSON', () => {
    const bodies = sample(predictBody);
    const all = bodies.join('\n');
    for (const needle of ['\uFEFF', '\r\n', '"__proto__"', '"constructor"', '1e999', '"instances"']) {
      expect(all, needle).toContain(needle);
    }
    expect(bodies.some((s) => s.length > 10_000)).toBe(true);
    expect(bodies.some(nonAscii)).toBe(true);
    const duplicated = bodies.some((s) => {
      const keys = s.match(/"(instances|model|version|features)":/g) ?? [];
      return new Set(keys).size < keys.length;
    });
    expect(duplicated).toBe(true);
    const parses = bodies.filter((s) => {
      try {
        JSON.parse(s.replace(/^\uFEFF/, ''));
        return true;
      } catch {
        return false;
      }
    });
    expect(parses.length / bodies.length).toBeGreaterThan(0.8);
  });

  it('CSV bodies: CRLF, lone CR, quoted fields, empty lines, BOMs, header lines, unicode', () => {
    const bodies = sample(csvBody);
    const all = bodies.map((b) => b.text).join('\n');
    for (const needle of ['\r\n', '"', '\n\n', '\uFEFF', FEATURES[0] as string])
      expect(all, JSON.stringify(needle)).toContain(needle);
    expect(bodies.some((b) => /\r(?!\n)/.test(b.text))).toBe(true);
    expect(bodies.some((b) => b.header)).toBe(true);
    expect(bodies.some((b) => nonAscii(b.text))).toBe(true);
  });

  it('JSON Lines bodies: blank lines, CRLF, BOMs, pollution keys', () => {
    const all = sample(jsonLinesBody).join('\n');
    for (const needle of ['\r\n', '\n\n', '\uFEFF', '"__proto__"'])
      expect(all, JSON.stringify(needle)).toContain(needle);
  });

  it('archives: `..`, absolute, backslash, NUL, unicode, long, deep and duplicate names, links and devices', () => {
    const specs = sample(archiveSpec);
    const names = specs.flatMap((spec) => spec.entries.map((entry) => entry.name));
    expect(names.some((n) => n.split('/').includes('..'))).toBe(true);
    expect(names.some((n) => n.startsWith('/') || n.startsWith('{parent}'))).toBe(true);
    expect(names.some((n) => n.includes('\\'))).toBe(true);
    expect(names.some((n) => n.includes('\0'))).toBe(true);
    expect(names.some(nonAscii)).toBe(true);
    expect(names.some((n) => n.length > 255)).toBe(true);
    expect(names.some((n) => n.split('/').length > 16)).toBe(true);
    expect(specs.some((spec) => new Set(spec.entries.map((e) => e.name)).size < spec.entries.length)).toBe(true);
    const kinds = new Set(specs.flatMap((spec) => spec.entries.map((entry) => entry.kind)));
    expect([...kinds].sort()).toEqual(['character-device', 'directory', 'fifo', 'file', 'link', 'symlink']);
    expect(new Set(specs.map((spec) => spec.format)).size).toBe(5);
  });
});
