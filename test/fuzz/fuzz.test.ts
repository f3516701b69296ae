/**
 * The fuzz suite (fast-check): one test file, so that the app and its model runtimes are imported
 * once rather than once per file. Each suite builds its own app in beforeAll.
 *
 *   npx vitest run test/fuzz                      FUZZ_RUNS runs per property (default 60)
 *   FUZZ_RUNS=2000 npx vitest run test/fuzz       the long run (npm run fuzz)
 *   FUZZ_SEED=<n> | FUZZ_SEED=random              replay a seed (printed on failure) or draw one
 *   FUZZ_VERBOSE=1                                print each property's tally of outcomes
 */
import './json-routes.suite.js';
import './text-routes.suite.js';
import './kepler.suite.js';
import './admin.suite.js';
import './upload.suite.js';
import './workers.suite.js';
import './generators.suite.js';
import './invariants.suite.js';
