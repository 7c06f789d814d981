// The page's two calls to its own server: the supported languages, and a join token.

export interface Language {
  code: string;
  name: string;
}

export interface PageConfig {
  languages: Language[];
  accessCodeRequired: boolean;
  agentName: string;
  /** Whether the interpreter detects a speaker's language (a speaker may then send `language: 'auto'`). */
  detectLanguage: boolean;
  /** The languages detection covers (codes), when it is on. */
  detectedLanguages: string[];
  /** The page's rooms are named with it (WEB_ROOM_PREFIX); the room field is the name without it. */
  roomPrefix: string;
}

/** A speaker's `language` when the interpreter is to detect it. */
export const DETECT = 'auto';

export type Role = 'listener' | 'speaker' | 'host';

export interface TokenRequest {
  room: string;
  name: string;
  role: Role;
  /** A listener's: the language to hear; a speaker's: the language spoken, or `DETECT`. */
  language: string;
  /** A speaker's: the language they hear (their `interpret_to`); unset: the one they speak. */
  hear?: string;
  accessCode?: string;
  /** A signed invite link's token: it fixes the room and the role (neither is sent with it). */
  invite?: string;
}

export interface Grant {
  token: string;
  url: string;
  identity: string;
  /** The full room name (the prefix included), and the role the token carries. */
  room: string;
  role: Role;
  /** A host's: what the host's panel sends to the host's endpoints (Authorization: Bearer). */
  hostKey?: string;
}

/** A refusal the person can act on (the server's 4xx `error`), or a failure to reach the server. */
export class ApiError extends Error {}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

async function readJson(response: Response): Promise<unknown> {
  try {
    return await response.json();
  } catch {
    return undefined;
  }
}

export async function fetchConfig(): Promise<PageConfig> {
  let response: Response;
  try {
    response = await fetch('api/config', { headers: { Accept: 'application/json' } });
  } catch {
    throw new ApiError('The server cannot be reached. Check your connection and reload the page.');
  }
  const body = await readJson(response);
  if (!response.ok || !isRecord(body) || !Array.isArray(body.languages)) {
    throw new ApiError(`The server could not give its settings (HTTP ${response.status}). Reload the page.`);
  }
  const languages = body.languages.filter(
    (l): l is Language => isRecord(l) && typeof l.code === 'string' && typeof l.name === 'string',
  );
  return {
    languages,
    accessCodeRequired: body.access_code_required === true,
    agentName: typeof body.agent_name === 'string' ? body.agent_name : 'interpreter',
    detectLanguage: body.detect_language === true,
    detectedLanguages: Array.isArray(body.detected_languages)
      ? body.detected_languages.filter((code): code is string => typeof code === 'string')
      : [],
    roomPrefix: typeof body.room_prefix === 'string' ? body.room_prefix : '',
  };
}

export async function requestToken(request: TokenRequest): Promise<Grant> {
  const payload: Record<string, string> =
    request.invite !== undefined
      ? { invite: request.invite, name: request.name, language: request.language }
      : { room: request.room, name: request.name, role: request.role, language: request.language };
  if (request.hear !== undefined) payload.hear = request.hear;
  if (request.accessCode) payload.access_code = request.accessCode;
  let response: Response;
  try {
    response = await fetch('api/token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(payload),
    });
  } catch {
    throw new ApiError('The server cannot be reached. Check your connection and try again.');
  }
  const body = await readJson(response);
  if (response.status >= 400 && response.status < 500) {
    const message = isRecord(body) && typeof body.error === 'string' ? body.error : `refused (HTTP ${response.status})`;
    throw new ApiError(message);
  }
  if (
    !response.ok ||
    !isRecord(body) ||
    typeof body.token !== 'string' ||
    typeof body.url !== 'string' ||
    typeof body.identity !== 'string'
  ) {
    throw new ApiError(`The server could not give a join token (HTTP ${response.status}). Try again.`);
  }
  const role = body.role === 'speaker' || body.role === 'host' ? body.role : 'listener';
  const room = typeof body.room === 'string' ? body.room : request.room;
  const hostKey = typeof body.host_key === 'string' ? body.host_key : undefined;
  return { token: body.token, url: body.url, identity: body.identity, room, role, hostKey };
}
