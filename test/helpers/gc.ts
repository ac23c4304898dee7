/** Forces a full garbage collection (works without --expose-gc). */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

setFlagsFromString('--expose-gc');
const gcFn = runInNewContext('gc') as () => void;

/** Runs GC a few times and yields so that deferred native finalizers get to run. */
export async function collectGarbage(rounds = 3): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    gcFn();
    await new Promise((r) => setImmediate(r));
  }
}
