// `judge-guard/phantom`: the adapters for Phantom's judge pipeline and the installer the Bun
// preload uses. Loads no native code, so it runs under Bun.
export * from "./phantom.js";
export * from "./phantom-install.js";
