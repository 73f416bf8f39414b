import type { JudgeRequest } from "../../src/index.js";

/** A Sonnet judge call on session `key` as it stands, in Phantom's shape (a snake_case `session`). */
export function sessionRequest(
  key: string,
  users: string[],
  replies: string[],
  judge = "observation_extraction",
): JudgeRequest {
  return {
    judge,
    model: "claude-sonnet-4-6",
    session: { session_key: key, user_messages: users, assistant_messages: replies },
  };
}
