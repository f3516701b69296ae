/**
 * Generators of request bodies and headers. Bodies are built as text, not through
 * JSON.stringify of objects, so that they can hold what objects cannot: duplicate keys,
 * `__proto__` keys, number literals beyond doubles, BOMs, lone surrogates. Most of them are
 * well-formed with the wrong shape, so they reach the decoders and the checks behind the parser.
 */
import fc from 'fast-check';
import { FEATURES, KEPLER, LINEAR, MLP } from '../helpers.js';

export const KEPLER_FEATURES = ['bpf_cpu_time_ms', 'bpf_page_cache_hit'] as const;

// ---------------------------------------------------------------------------------------------
// Scalars

/** Strings that tend to break parsers and checks, and random ones (graphemes, lone surrogates). */
export const fuzzString: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.string({ unit: 'grapheme', maxLength: 12 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }) },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '',
      ' ',
      '\uFEFF',
      '\u0000',
      '1',
      ' 2 ',
      '1e3',
      '0x10',
      '1_000',
      'NaN',
      'Infinity',
      '-Infinity',
      '１２',
      '١٢',
      '1,5',
      'null',
      'true',
      '__proto__',
      'constructor',
      'prototype',
      'toString',
      'hasOwnProperty',
      '\u202Eevil',
      'e\u0301',
      '🙂',
      '\r\n',
      '"',
      '\\',
      '%',
      '../..',
      'x'.repeat(300),
    ),
  },
);

/** Number literals beyond what float32 or float64 hold, signed zeros, subnormals, long digit strings. */
const NUMBER_LITERALS = [
  '1e999',
  '-1e999',
  '1e39',
  '3.5e38',
  '-3.5e38',
  '3.4028234663852886e38',
  '3.4028235677973366e38',
  '1.7976931348623157e308',
  '5e-324',
  '1e-400',
  '-0',
  '-0.0',
  '0e0',
  '1E+2',
  '123456789012345678901234567890',
  '0.000000000000000000000000000000000000000000001',
  '9007199254740993',
];

export const numberText: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.double({ noNaN: true, noDefaultInfinity: true }).map((n) => JSON.stringify(n)) },
  { weight: 2, arbitrary: fc.integer().map(String) },
  { weight: 2, arbitrary: fc.constantFrom(...NUMBER_LITERALS) },
  { weight: 1, arbitrary: fc.bigInt({ min: -(10n ** 40n), max: 10n ** 40n }).map(String) },
);

/** A plausible counter value: what a good cell holds. */
export const goodNumber: fc.Arbitrary<number> = fc.oneof(
  fc.double({ min: 0, max: 1e10, noNaN: true }),
  fc.integer({ min: 0, max: 1_000_000 }),
);

/** Keys of generated objects: the fields the routes know, prototype-pollution keys, anything. */
export const keyText: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      'instances',
      'model',
      'version',
      'features',
      'metrics',
      'values',
      'output_type',
      'source',
      'weight',
      '__proto__',
      'constructor',
      'prototype',
      'toString',
      'polluted',
    ),
  },
  { weight: 1, arbitrary: fuzzString },
);

// ---------------------------------------------------------------------------------------------
// JSON as text

export const jsonString = (value: string) => JSON.stringify(value);
export const jsonArray = (items: readonly string[]) => `[${items.join(',')}]`;
export const jsonObject = (entries: ReadonlyArray<readonly [string, string]>) =>
  `{${entries.map(([key, value]) => `${JSON.stringify(key)}:${value}`).join(',')}}`;

/** Payloads that would plant a property on Object.prototype if anything merged them naively. */
export const pollutionValue: fc.Arbitrary<string> = fc.constantFrom(
  '{"polluted":"yes"}',
  '{"fuzzPolluted":1,"isAdmin":true}',
  '{"prototype":{"polluted":"yes"}}',
  '{"__proto__":{"polluted":"yes"}}',
  '[{"polluted":1}]',
);

export const pollutionEntry: fc.Arbitrary<[string, string]> = fc.tuple(
  fc.constantFrom('__proto__', 'constructor', 'prototype', '__defineGetter__', 'hasOwnProperty'),
  fc.oneof(pollutionValue, fc.constant('{"prototype":{"polluted":"yes","isAdmin":true}}')),
);

/** Any JSON value as text, a few levels deep, with duplicate and pollution keys in its objects. */
export const jsonText: fc.Arbitrary<string> = fc.letrec<{ value: string; array: string; object: string }>((tie) => ({
  value: fc.oneof(
    { maxDepth: 3, depthSize: 'small' },
    numberText,
    fuzzString.map(jsonString),
    fc.constantFrom('true', 'false', 'null'),
    tie('array'),
    tie('object'),
  ),
  array: fc.array(tie('value'), { maxLength: 4 }).map(jsonArray),
  object: fc
    .array(
      fc.oneof({ weight: 5, arbitrary: fc.tuple(keyText, tie('value')) }, { weight: 1, arbitrary: pollutionEntry }),
      {
        maxLength: 4,
      },
    )
    .map(jsonObject),
})).value;

/** Deeply nested arrays or objects, beyond any sane depth (and beyond a recursive parser's stack). */
export const deepNesting: fc.Arbitrary<string> = fc
  .tuple(
    fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1_000, max: 120_000 })),
    fc.constantFrom('array', 'object', 'mixed'),
    fc.constantFrom('1', '[1]', '', '"x"'),
  )
  .map(([depth, kind, inner]) => {
    if (kind === 'array') return `{"instances":${'['.repeat(depth)}${inner}${']'.repeat(depth)}}`;
    if (kind === 'object') return `${'{"instances":'.repeat(depth)}[[${inner || '1'}]]${'}'.repeat(depth)}`;
    return `{"instances":[${'[{"a":'.repeat(depth)}${inner || '1'}${'}]'.repeat(depth)}]}`;
  });

/** Valid JSON text damaged in one place: cut short, a character inserted or one removed. */
export function mangled(text: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc
    .tuple(
      text,
      fc.nat(),
      fc.constantFrom('cut', 'insert', 'delete'),
      fc.constantFrom('"', ',', '}', ']', '{', '\\', '\u0000', 'x', '\n'),
    )
    .map(([t, at, how, char]) => {
      const i = t.length === 0 ? 0 : at % t.length;
      if (how === 'cut') return t.slice(0, i);
      if (how === 'insert') return `${t.slice(0, i)}${char}${t.slice(i)}`;
      return `${t.slice(0, i)}${t.slice(i + 1)}`;
    });
}

/** A BOM or whitespace (CRLF included) around a body, sometimes. */
export function decorated(text: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc
    .tuple(fc.constantFrom('', '', '', '\uFEFF', ' \n', '\r\n\t'), text, fc.constantFrom('', '', '\n', ' \r\n'))
    .map(([before, t, after]) => `${before}${t}${after}`);
}

/** `arbitrary`'s value in `percent`% of the cases, else null. */
export function sometimes<T>(arbitrary: fc.Arbitrary<T>, percent: number): fc.Arbitrary<T | null> {
  return fc.oneof({ weight: 100 - percent, arbitrary: fc.constant(null) }, { weight: percent, arbitrary });
}

/** Entries in every order (keys may repeat: JSON keeps the last one). */
export function shuffled<T>(items: readonly T[]): fc.Arbitrary<T[]> {
  return fc.shuffledSubarray([...items], { minLength: items.length, maxLength: items.length });
}

// ---------------------------------------------------------------------------------------------
// Matrices

/** A cell that is not a plausible number: wrong types, values beyond float32, pollution objects. */
export const badCellText: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: numberText },
  { weight: 2, arbitrary: fuzzString.map(jsonString) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      'true',
      'false',
      'null',
      '[]',
      '{}',
      '[1]',
      '"1"',
      '{"__proto__":{"polluted":1}}',
      '{"constructor":{"prototype":{"polluted":1}}}',
    ),
  },
  { weight: 1, arbitrary: jsonText },
);

/** A row of `width` cells, good numbers except at most one bad cell. Wide rows are zeros (cheap to make). */
export function rowOf(width: number): fc.Arbitrary<string> {
  if (width > 16) {
    return sometimes(fc.tuple(fc.nat(width - 1), badCellText), 30).map((bad) => {
      const cells = Array<string>(width).fill('0');
      if (bad !== null) cells[bad[0]] = bad[1];
      return jsonArray(cells);
    });
  }
  const good = fc.array(goodNumber.map(String), { minLength: width, maxLength: width });
  return fc.oneof(
    { weight: 5, arbitrary: good.map(jsonArray) },
    {
      weight: 1,
      arbitrary: fc.tuple(good, fc.nat(), badCellText).map(([cells, at, bad]) => {
        const copy = [...cells];
        if (copy.length === 0) copy.push(bad);
        else copy[at % copy.length] = bad;
        return jsonArray(copy);
      }),
    },
  );
}

/** How many values a row holds: mostly the 8 features of the shipped models, sometimes not. */
export const width: fc.Arbitrary<number> = fc.oneof(
  { weight: 8, arbitrary: fc.constant(8) },
  { weight: 2, arbitrary: fc.constant(2) },
  { weight: 2, arbitrary: fc.nat(12) },
  { weight: 1, arbitrary: fc.integer({ min: 990, max: 1_100 }) },
);

/** `instances` as text: rows of one width mostly, a ragged or non-array row at times, any JSON rarely. */
export const instancesText: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 10,
    arbitrary: width.chain((w) =>
      fc
        .tuple(
          fc.array(rowOf(w), { minLength: 1, maxLength: 4 }),
          sometimes(fc.tuple(fc.nat(), fc.oneof(width.chain(rowOf), jsonText)), 15),
        )
        .map(([rows, odd]) => {
          const copy = [...rows];
          if (odd !== null) copy.splice(odd[0] % (copy.length + 1), 0, odd[1]);
          return jsonArray(copy);
        }),
    ),
  },
  { weight: 1, arbitrary: fc.integer({ min: 51, max: 80 }).map((n) => jsonArray(Array(n).fill('[1,2,3,4,5,6,7,8]'))) },
  { weight: 1, arbitrary: fc.constantFrom('[]', '[[]]', '[[],[]]') },
  { weight: 1, arbitrary: jsonText },
);

export const modelNameText: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(LINEAR, MLP, KEPLER).map(jsonString) },
  { weight: 1, arbitrary: fuzzString.map(jsonString) },
  { weight: 1, arbitrary: jsonText },
);

export const versionText: fc.Arbitrary<string> = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom('1', '"1"', 'null') },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      '0',
      '-1',
      '1.5',
      '"01"',
      '"1.0"',
      '2',
      '1e0',
      '1e300',
      '"x"',
      'true',
      '[1]',
      '{}',
      '9007199254740993',
      '"99999999999999999999"',
      '""',
    ),
  },
  { weight: 1, arbitrary: numberText },
  { weight: 1, arbitrary: jsonText },
);

/** `features`: the model's names in any order, one of them wrong, repeated or missing, or anything. */
export function featuresText(features: readonly string[]): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 8, arbitrary: shuffled(features).map((names) => JSON.stringify(names)) },
    {
      weight: 3,
      arbitrary: fc
        .tuple(shuffled(features), fc.nat(), fc.constantFrom('replace', 'repeat', 'drop', 'add'), fuzzString)
        .map(([names, at, how, odd]) => {
          const copy = [...names];
          const i = at % copy.length;
          if (how === 'replace') copy[i] = odd;
          else if (how === 'repeat') copy[i] = copy[(i + 1) % copy.length] ?? odd;
          else if (how === 'drop') copy.splice(i, 1);
          else copy.splice(i, 0, odd);
          return JSON.stringify(copy);
        }),
    },
    { weight: 1, arbitrary: jsonText },
  );
}

/** The /predict body's fields, as entries, with extra, repeated and pollution keys at times. */
export const predictEntries: fc.Arbitrary<Array<[string, string]>> = fc
  .tuple(
    fc.oneof(
      // Most bodies carry instances: without them the answer is always the same invalid_body.
      { weight: 8, arbitrary: predictFields(['instances']) },
      { weight: 1, arbitrary: predictFields([]) },
    ),
    fc.oneof(
      { weight: 6, arbitrary: fc.constant([] as Array<[string, string]>) },
      { weight: 1, arbitrary: fc.array(fc.tuple(keyText, jsonText), { minLength: 1, maxLength: 2 }) },
      { weight: 1, arbitrary: fc.array(pollutionEntry, { minLength: 1, maxLength: 1 }) },
    ),
  )
  .chain(([fields, extra]) => {
    const entries = Object.entries(fields).filter((entry): entry is [string, string] => entry[1] !== undefined);
    return shuffled([...entries, ...extra]);
  });

function predictFields(required: Array<'instances'>) {
  return fc.record(
    {
      instances: instancesText,
      model: modelNameText,
      version: versionText,
      features: featuresText(FEATURES),
    },
    { requiredKeys: required },
  );
}

/** Any body a JSON prediction route may receive, mostly well-formed JSON of the wrong shape. */
export const predictBody: fc.Arbitrary<string> = decorated(
  fc.oneof(
    { weight: 10, arbitrary: predictEntries.map(jsonObject) },
    { weight: 3, arbitrary: instancesText },
    { weight: 1, arbitrary: jsonText },
    { weight: 1, arbitrary: deepNesting },
    { weight: 1, arbitrary: mangled(predictEntries.map(jsonObject)) },
  ),
);

// ---------------------------------------------------------------------------------------------
// CSV and JSON Lines

/** A CSV field holding a good number: plain mostly, quoted or padded with spaces at times. */
const goodCsvField: fc.Arbitrary<string> = fc.oneof(
  { weight: 14, arbitrary: goodNumber.map(String) },
  { weight: 1, arbitrary: goodNumber.map((n) => `"${n}"`) },
  { weight: 1, arbitrary: goodNumber.map((n) => ` ${n}\t`) },
);

/** A CSV field that is not a plain number: odd numbers, quoting gone wrong, text. */
const badCsvField: fc.Arbitrary<string> = fc.oneof(
  { weight: 2, arbitrary: numberText },
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      '',
      ' ',
      'NaN',
      'inf',
      '-Infinity',
      '1e39',
      '0x1',
      '1_0',
      '"1,2"',
      '"a""b"',
      '"',
      '"unterminated',
      ' "1" ',
      '"\n1"',
      '"1\r\n"',
      '1 2',
      '+1',
      '.5',
      '5.',
      '-.5e-3',
      '１',
    ),
  },
  { weight: 1, arbitrary: fuzzString.map((s) => (s.includes('"') ? `"${s.replaceAll('"', '""')}"` : s)) },
);

const csvSeparator = fc.oneof(
  { weight: 12, arbitrary: fc.constant(',') },
  { weight: 1, arbitrary: fc.constantFrom(';', '\t') },
);

/** A line of `fields` good fields, one of them bad at times. */
function csvLine(fields: number): fc.Arbitrary<string> {
  return fc
    .tuple(
      fc.array(goodCsvField, { minLength: fields, maxLength: fields }),
      sometimes(fc.tuple(fc.nat(), badCsvField), 25),
      csvSeparator,
    )
    .map(([cells, bad, separator]) => {
      const copy = [...cells];
      if (bad !== null) copy[bad[0] % Math.max(1, copy.length)] = bad[1];
      return copy.join(separator);
    });
}

/** A CSV header line: the features in any order, quoted or spaced at times, one wrong at times. */
const csvHeader: fc.Arbitrary<string> = featuresText(FEATURES).map((text) => {
  try {
    const names = JSON.parse(text) as unknown;
    if (Array.isArray(names)) {
      return names
        .map((name) => {
          const s = String(name);
          return /[",\n\r]/.test(s) || s.length % 3 === 0 ? `"${s.replaceAll('"', '""')}"` : s;
        })
        .join(',');
    }
  } catch {
    // not an array: use the text itself as a (bad) header line
  }
  return text;
});

/**
 * Lines joined by line breaks (LF and CRLF mostly; `odd` adds lone CRs and lines of commas), with
 * blank lines, a BOM and a trailing newline at times.
 */
function joinLines(lines: fc.Arbitrary<string[]>, odd = true): fc.Arbitrary<string> {
  const breaks = odd ? ['\n', '\n', '\n', '\r\n', '\r\n', '\r'] : ['\n', '\r\n'];
  const blanks = odd ? ['', '   ', '\t', ',,,', '\uFEFF'] : ['', '   ', '\t', '\uFEFF'];
  return fc
    .tuple(
      lines,
      fc.oneof(
        { weight: 4, arbitrary: fc.constantFrom(...breaks).map((b) => [b]) },
        { weight: 1, arbitrary: fc.array(fc.constantFrom(...breaks), { minLength: 1, maxLength: 3 }) },
      ),
      fc.array(fc.tuple(fc.nat(), fc.constantFrom(...blanks)), { maxLength: 2 }),
      fc.boolean(),
      fc.constantFrom('', '', '', '\uFEFF'),
    )
    .map(([rows, breaks, blanks, trailing, bom]) => {
      const all = [...rows];
      for (const [at, blank] of blanks) all.splice(at % (all.length + 1), 0, blank);
      let text = bom;
      all.forEach((line, i) => {
        text += line;
        if (i < all.length - 1 || trailing) text += breaks[i % breaks.length];
      });
      return text;
    });
}

/** A CSV body (and whether it begins with a header line). */
export const csvBody: fc.Arbitrary<{ text: string; header: boolean }> = fc.oneof(
  { weight: 12, arbitrary: csvRows() },
  {
    weight: 1,
    // Very wide or very long lines (MAX_COLUMNS, MAX_CSV_LINE_BYTES).
    arbitrary: fc
      .tuple(fc.integer({ min: 990, max: 1_100 }), fc.constantFrom('1', '1234567.5', '"1"'), fc.boolean())
      .map(([n, cell, long]) => ({
        text: `${Array(long ? n * 300 : n)
          .fill(cell)
          .join(',')}\n`,
        header: false,
      })),
  },
);

function csvRows(): fc.Arbitrary<{ text: string; header: boolean }> {
  return fc.tuple(width, fc.boolean(), fc.integer({ min: 0, max: 5 })).chain(([w, header, rows]) =>
    fc
      .tuple(
        fc.array(
          fc.oneof(
            { weight: 12, arbitrary: csvLine(Math.min(w, 16)) },
            { weight: 1, arbitrary: width.chain((v) => csvLine(Math.min(v, 16))) },
          ),
          {
            minLength: rows,
            maxLength: rows,
          },
        ),
        csvHeader,
      )
      .chain(([lines, head]) => joinLines(fc.constant(header ? [head, ...lines] : lines)))
      .map((text) => ({ text, header })),
  );
}

/** A JSON Lines body: one row per line mostly, blank lines, CRLF, a BOM, garbage lines at times. */
export const jsonLinesBody: fc.Arbitrary<string> = width.chain((w) =>
  joinLines(
    fc.array(
      fc.oneof(
        { weight: 20, arbitrary: rowOf(Math.min(w, 16)) },
        { weight: 1, arbitrary: jsonText },
        { weight: 1, arbitrary: mangled(rowOf(8)) },
        { weight: 1, arbitrary: fc.constant('{"__proto__":{"polluted":1}}') },
      ),
      { minLength: 0, maxLength: 5 },
    ),
    false,
  ),
);

// ---------------------------------------------------------------------------------------------
// Headers

/** A header value a client could send: printable ASCII (Node refuses control characters). */
export const headerValue: fc.Arbitrary<string> = fc.string({
  unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
  maxLength: 40,
});

export const csvContentType: fc.Arbitrary<string> = fc.oneof(
  { weight: 8, arbitrary: fc.constant('text/csv') },
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      'text/csv; charset=utf-8',
      'TEXT/CSV',
      'text/csv;header=absent',
      'text/csv; header=junk',
    ),
  },
  { weight: 1, arbitrary: fc.constantFrom('text/csv; header=', 'text/csv; ;;', 'text/csv; charset=utf-16') },
);

export const csvHeaderContentType: fc.Arbitrary<string> = fc.constantFrom(
  'text/csv; header=present',
  'text/csv;header=present',
  'TEXT/CSV; HEADER=PRESENT',
  'text/csv; charset=utf-8; header=present',
  'text/csv; header="present"',
);

export const jsonContentType: fc.Arbitrary<string> = fc.constantFrom(
  'application/json',
  'application/json; charset=utf-8',
  'Application/JSON',
  'application/json;charset=utf-16',
  'application/json; foo=bar',
);

export const jsonLinesContentType: fc.Arbitrary<string> = fc.constantFrom(
  'application/jsonlines',
  'application/jsonlines; charset=utf-8',
  'APPLICATION/JSONLINES',
);

/** `Accept`: none, the three types, ranges, q-values (odd ones too) or garbage. */
export const acceptHeader: fc.Arbitrary<string | undefined> = fc.oneof(
  { weight: 6, arbitrary: fc.constant(undefined) },
  {
    weight: 8,
    arbitrary: fc.constantFrom(
      'application/json',
      'text/csv',
      'application/jsonlines',
      '*/*',
      'text/*',
      'application/*',
      'text/csv;q=0.5, application/json;q=0.9',
      'application/jsonlines;q=1.5',
      'application/json, text/csv;q=0',
      'TEXT/CSV',
      'image/png, */*;q=0.1',
    ),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      'text/html',
      'application/json;q=0',
      'text/csv;q=0.5, application/json;q=0.9',
      'application/jsonlines;q=1.5',
      '*/*;q=abc',
      ',,,',
      ';',
    ),
  },
  {
    weight: 1,
    arbitrary: fc
      .array(
        fc.tuple(
          fc.constantFrom('application/json', 'text/csv', 'application/jsonlines', '*/*', 'text/*', 'x/y', '', 'a'),
          fc.option(fc.oneof(fc.double({ min: -1, max: 2, noNaN: true }).map(String), headerValue), { freq: 2 }),
        ),
        { maxLength: 4 },
      )
      .map((ranges) => ranges.map(([type, q]) => (q === null ? type : `${type};q=${q}`)).join(', ')),
  },
  { weight: 1, arbitrary: headerValue },
);
