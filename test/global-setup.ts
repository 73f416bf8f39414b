// Before any test worker starts: the Phantom snapshots are copied and `bun install`ed once
// (tens of seconds on a fresh machine), rather than inside some test's time limit.
import { installedPhantom, PHANTOM_VERSIONS, phantomUnavailable } from "./helpers/phantom.js";

export default function setup(): void {
  if (phantomUnavailable() !== undefined) return;
  for (const v of PHANTOM_VERSIONS) installedPhantom(v);
}
