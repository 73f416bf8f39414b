// What the specs that run real child processes share: the scripts under fixtures/processes, and
// libfaketime (Debian's faketime), which moves one child's system clock.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The path of a script in test/fixtures/processes. */
export const processFixture = (name: string): string =>
  fileURLToPath(new URL(`../fixtures/processes/${name}`, import.meta.url));

/** libfaketime's library where Debian installs it, or undefined when it is not installed. */
export const LIBFAKETIME: string | undefined = [
  "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
  "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
  "/usr/lib/faketime/libfaketime.so.1",
].find((p) => existsSync(p));
