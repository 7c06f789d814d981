// Own voice (docs/voices-and-consent.md): a speaker's consent to be interpreted in their own voice, in plain
// words, off by default and withdrawn at any time (their `interpreter.voice` attribute: `own`, or absent);
// and, for everyone, who is heard in their own voice now (the interpreter's `interpreter.own_voice`, a JSON
// list of identities), shown in the status bar.
import type { Participant, Room } from 'livekit-client';
import { byId, show } from './dom';

export const ATTR_VOICE = 'interpreter.voice';
export const ATTR_OWN_VOICE = 'interpreter.own_voice';

/** The identities the interpreters say are heard in their own voice now. */
export function ownVoiceIdentities(agents: readonly Participant[]): Set<string> {
  const identities = new Set<string>();
  for (const agent of agents) {
    const value = agent.attributes[ATTR_OWN_VOICE];
    if (value === undefined || value === '') continue;
    try {
      const parsed: unknown = JSON.parse(value);
      if (Array.isArray(parsed)) for (const item of parsed) if (typeof item === 'string') identities.add(item);
    } catch {
      // not JSON: nobody shown
    }
  }
  return identities;
}

/** The own-voice parts of one session: the speaker's checkbox (speakers only) and the status line. */
export class OwnVoice {
  private readonly field = byId('own-voice-field', HTMLElement);
  private readonly box = byId('own-voice', HTMLInputElement);
  private readonly state = byId('own-voice-state', HTMLElement);
  private readonly error = byId('own-voice-error', HTMLElement);
  private readonly line = byId('own-voices-line', HTMLElement);
  private readonly names = byId('own-voices', HTMLElement);
  private busy = false;

  constructor(
    private readonly room: Room,
    speaker: boolean,
  ) {
    this.box.checked = false; // off by default, at every join
    this.error.textContent = '';
    this.state.textContent = '';
    show(this.field, speaker);
    this.box.onchange = () => {
      void this.consent(this.box.checked);
    };
    this.update([]);
  }

  /** The interpreters changed: who is heard in their own voice, and whether this speaker is. */
  update(agents: readonly Participant[]): void {
    const identities = ownVoiceIdentities(agents);
    const me = this.room.localParticipant.identity;
    const shown = [...identities].map((identity) =>
      identity === me ? 'you' : (this.room.getParticipantByIdentity(identity)?.name ?? 'a speaker'),
    );
    this.names.textContent = shown.join(', ');
    this.names.dataset.identities = [...identities].sort().join(',');
    show(this.line, shown.length > 0);
    if (!this.box.checked) {
      this.state.textContent = '';
    } else {
      this.state.textContent = identities.has(me)
        ? 'Your own voice is in use now.'
        : 'Your preset voice is used until enough of your speech is heard (about 5 seconds).';
    }
  }

  /** The session ended: nothing of it stays on the page. */
  close(): void {
    this.box.onchange = null;
    this.box.checked = false;
    show(this.field, false);
    show(this.line, false);
  }

  private async consent(on: boolean): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    this.box.disabled = true;
    this.error.textContent = '';
    try {
      // "" deletes the attribute: the interpreter switches back to the preset voice and deletes the copy
      await this.room.localParticipant.setAttributes({ [ATTR_VOICE]: on ? 'own' : '' });
      this.state.textContent = on
        ? 'Your preset voice is used until enough of your speech is heard (about 5 seconds).'
        : '';
    } catch {
      this.box.checked = !on;
      this.error.textContent = on
        ? 'The room did not take your choice. Check the connection and try again.'
        : 'The room did not take your choice: your own voice may still be in use. Try again, or leave.';
    } finally {
      this.busy = false;
      this.box.disabled = false;
    }
  }
}
