// An invite link (`/#invite=<token>`): the room and the role are the link's, fixed; the person only says
// their name and picks a language. The link is in the fragment, which the browser never sends to a server
// (no Referer, no access log). The token is signed by the web server, which checks it: what is read here is
// only shown, never trusted.
import type { Role } from './api';
import { byId, show } from './dom';

export interface InviteLink {
  token: string;
  room: string; // the full room name
  role: Role;
  language?: string; // a listener's link: the language picked first
}

const ROLE_WORDS: Record<Role, string> = {
  listener: 'listen (hear the interpretation)',
  speaker: 'speak (use my microphone)',
  host: 'host (run the room: invite links, languages, end)',
};

function decodePayload(part: string): unknown {
  try {
    const base64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const bytes = Uint8Array.from(atob(base64 + '='.repeat((4 - (base64.length % 4)) % 4)), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return undefined;
  }
}

/** The invite in the page's address (`#invite=…`), if any. A link that cannot be read is still sent as it
 * is: the server says what is wrong with it. */
export function readInvite(hash: string = window.location.hash): InviteLink | undefined {
  const token = new URLSearchParams(hash.replace(/^#/, '')).get('invite');
  if (!token) return undefined;
  const payload = decodePayload(token.split('.', 1)[0]);
  const fields = typeof payload === 'object' && payload !== null ? (payload as Record<string, unknown>) : {};
  const role = fields.role === 'speaker' || fields.role === 'host' ? fields.role : 'listener';
  const room = typeof fields.room === 'string' ? fields.room : '';
  const language = typeof fields.language === 'string' ? fields.language : undefined;
  return { token, room, role, language };
}

/** The join form for an invite: the room shown, not editable; the role said, not chosen; no access code. */
export function applyInvite(invite: InviteLink, roomPrefix: string): void {
  const room = byId('room', HTMLInputElement);
  room.value = invite.room.startsWith(roomPrefix) ? invite.room.slice(roomPrefix.length) : invite.room;
  room.readOnly = true;
  byId('room-hint', HTMLElement).textContent = 'From your invite link.';
  const role = byId('role', HTMLSelectElement);
  role.value = invite.role;
  show(byId('role-field', HTMLElement), false);
  const fixed = byId('invite-role', HTMLElement);
  fixed.textContent = `You are invited to ${ROLE_WORDS[invite.role]}.`;
  fixed.dataset.role = invite.role;
  show(fixed, true);
  show(byId('access-code-field', HTMLElement), false);
}
