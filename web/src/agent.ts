// Finding the interpreter among the room's participants, and reading the attributes it sets on itself.
import type { Participant, Room } from 'livekit-client';

export const ATTR_AGENT_STATE = 'lk.agent.state';
export const ATTR_LANGUAGES = 'interpreter.languages';
export const ATTR_FAULTS = 'interpreter.faults';
export const ATTR_WARNINGS = 'interpreter.warnings';
export const TRACK_PREFIX = 'interpretation-';

/** The interpreter: the agent that publishes interpretation tracks or says which languages it serves. */
export function findInterpreter(room: Room): Participant | undefined {
  let firstAgent: Participant | undefined;
  for (const participant of room.remoteParticipants.values()) {
    if (!participant.isAgent) continue;
    if (ATTR_LANGUAGES in participant.attributes || ATTR_AGENT_STATE in participant.attributes) return participant;
    firstAgent ??= participant;
  }
  return firstAgent;
}

/** The languages the interpreter publishes a track for now (its `interpreter.languages`). */
export function interpretedLanguages(agent: Participant | undefined): Set<string> {
  const value = agent?.attributes[ATTR_LANGUAGES] ?? '';
  return new Set(
    value
      .split(',')
      .map((code) => code.trim())
      .filter((code) => code !== ''),
  );
}

/** `interpreter.warnings` is a JSON list of problems; anything else is shown as it is. */
export function parseWarnings(value: string | undefined): string[] {
  if (value === undefined || value.trim() === '') return [];
  try {
    const parsed: unknown = JSON.parse(value);
    if (Array.isArray(parsed)) return parsed.map((item) => String(item));
  } catch {
    // not JSON: fall through
  }
  return [value];
}

const FAULT_TEXT: Record<string, string> = {
  llm: 'translation is failing (no language model answers)',
  stt: 'speech recognition is failing for a speaker',
  tts: 'the interpreter’s voice is failing (captions still come)',
};

export function describeFaults(value: string | undefined): string[] {
  if (value === undefined) return [];
  return value
    .split(',')
    .map((fault) => fault.trim())
    .filter((fault) => fault !== '')
    .map((fault) => FAULT_TEXT[fault] ?? fault);
}
