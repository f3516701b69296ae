// Worker threads do not inherit tsx's loader: when wattserve runs from its TypeScript sources
// (tests, `npm run dev`), this entry registers it before loading the worker.
import { register } from 'tsx/esm/api';

register();
const worker = await import('./prediction-worker.ts');
export default worker.default;
