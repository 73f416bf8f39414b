import { describe, expect, it } from "vitest";
import { fingerprint, signReply } from "../../src/fingerprint/fingerprint.js";
import { normalize } from "../../src/fingerprint/normalize.js";
import { sameReply, wordDifference } from "../../src/fingerprint/similarity.js";
import { CANNED } from "../helpers/replies.js";

describe("normalize", () => {
  it.each([
    ["case and punctuation", "PLEASE   wait!!", "please wait"],
    ["mixed blanks", "please \t wait\u3000now", "please wait now"],
    ["NFKC fullwidth letters", "Ｐｌｅａｓｅ ｗａｉｔ", "please wait"],
    ["non-breaking and zero-width spaces", "please\u00a0wait\u200b.", "please wait"],
    ["curly apostrophe", "I\u2019m busy", "im busy"],
    ["UUID", "request 3f2b8a1e-9c4d-4e5f-8a6b-7c8d9e0f1a2b failed", "request _uuid_ failed"],
    ["ISO timestamp", "started 2026-11-20T10:31:07Z", "started _ts_"],
    ["clock time", "since 10:31 am", "since _ts_"],
    ["hex id", "ref: 8f2c1a9b", "ref _id_"],
    ["prefixed id", "request req_8f2c91 queued", "request _id_ queued"],
    ["compound duration", "elapsed 3m12s", "elapsed _dur_"],
    ["spelled duration", "try again in 30 seconds", "try again in _dur_"],
    ["counter", "attempt 7 of 10", "attempt _n_ of _n_"],
    ["words that look like units stay", "I have 2 dogs", "i have _n_ dogs"],
  ])("%s", (_name, input, expected) => {
    expect(normalize(input)).toBe(expected);
  });

  it("keeps line structure for signatures but joins lines for the whole", () => {
    const sig = signReply("Done.\n\n-- \nSent by Phantom");
    expect(sig.lines).toEqual(["done", "sent by phantom"]);
    expect(sig.normalized).toBe("done sent by phantom");
  });
});

describe("fingerprint", () => {
  it.each([
    ["the canned line itself", CANNED],
    ["different case and spacing", "i'm  still working on your previous message.   please wait"],
    ["curly quote", "I\u2019m still working on your previous message. Please wait."],
    ["trailing whitespace and newline", `${CANNED}  \n`],
  ])("variants of one canned line share a fingerprint: %s", (_name, variant) => {
    expect(fingerprint(variant)).toBe(fingerprint(CANNED));
  });

  it.each([
    ["elapsed time", "Still processing (elapsed 3m12s).", "Still processing (elapsed 45 seconds)."],
    ["request id", "Busy, request 7f3a9c2e.", "Busy, request 0b1d44aa."],
    ["timestamp", "Queued at 2026-11-20T10:31:07Z.", "Queued at 2026-11-21T01:02:03.456Z."],
    ["counter", "Retry 1 of 5 pending.", "Retry 4 of 5 pending."],
  ])("volatile tokens do not change the fingerprint: %s", (_name, a, b) => {
    expect(fingerprint(a)).toBe(fingerprint(b));
  });

  it.each([
    ["different words", "Please wait.", "Please stop."],
    ["a negation", "The deploy succeeded.", "The deploy has not succeeded."],
  ])("different replies get different fingerprints: %s", (_name, a, b) => {
    expect(fingerprint(a)).not.toBe(fingerprint(b));
  });
});

describe("sameReply", () => {
  const none = new Set<string>();

  it.each([
    ["exact", CANNED, CANNED, true],
    [
      "a word or two added",
      CANNED,
      "I'm still working on your previous message. Please wait a moment.",
      true,
    ],
    ["short different acks", "Done.", "Fixed.", false],
    ["different substance", "The tests pass on main.", "The build fails on the invoice branch.", false],
  ])("%s", (_name, a, b, same) => {
    expect(sameReply(signReply(a), signReply(b), none)).toBe(same);
  });

  it("replies sharing a long footer are not the same once the footer is known boilerplate", () => {
    const footer =
      "\n--\nPhantom, your AI co-worker. Replies may be inaccurate; verify before acting.\nReply STOP to pause me.";
    const a = signReply(`I renamed the function and updated both callers.${footer}`);
    const b = signReply(`The migration ran; 3 rows needed a manual fix.${footer}`);
    const boilerplate = new Set(a.lines.slice(1));
    expect(sameReply(a, b, boilerplate)).toBe(false);
  });

  it("counts word differences with multiplicity", () => {
    expect(wordDifference(["a", "a", "b"], ["a", "b"])).toBe(1);
    expect(wordDifference(["x"], ["y"])).toBe(2);
  });
});
