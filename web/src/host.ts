// The host's panel: invite links to share (speakers, listeners, "listen in Spanish"), the room's languages,
// glossary and formality, who is speaking and in which voice, and ending the interpretation. Every action
// goes through the web server with the host key (agent/run/web_host.py): nobody's join token can change
// the room.
import { type Participant, type Room, RoomEvent, Track } from 'livekit-client';
import type { Language } from './api';
import { byId, show } from './dom';

const ATTR_LANGUAGE = 'language';
const ATTR_VOICE = 'interpreter.voice'; // a speaker's consent to their own voice (docs/room-contract.md)
const ATTR_LANGUAGES = 'interpreter.languages';
const FORMALITIES = ['neutral', 'formal', 'informal'];

interface RoomState {
  room: string;
  settings: { target_languages?: string[]; glossary?: { keep?: string[]; translate?: unknown }; formality?: string };
  interpreting: boolean;
}

/** The voice a speaker is heard in, as the room shows it: their consent attribute (`interpreter.voice`).
 * The hook for the own-voice indicator: replace when the interpreter publishes whether a clone is in use. */
export function voiceOf(participant: Participant): string {
  return participant.attributes[ATTR_VOICE] === 'own' ? 'own voice' : 'interpreter voice';
}

export class HostPanel {
  private readonly panel = byId('host-panel', HTMLElement);
  private readonly links = byId('invite-links', HTMLUListElement);
  private readonly linksError = byId('host-links-error', HTMLElement);
  private readonly valid = byId('invite-valid', HTMLSelectElement);
  private readonly settingsForm = byId('room-settings', HTMLFormElement);
  private readonly targets = byId('room-languages', HTMLInputElement);
  private readonly formality = byId('room-formality', HTMLSelectElement);
  private readonly keep = byId('room-keep', HTMLTextAreaElement);
  private readonly settingsStatus = byId('room-settings-status', HTMLElement);
  private readonly speakers = byId('room-speakers', HTMLUListElement);
  private readonly endButton = byId('end-interpretation', HTMLButtonElement);
  private readonly endStatus = byId('host-end-status', HTMLElement);
  private state: RoomState | undefined;
  private readonly refresh = (): void => this.showSpeakers();

  constructor(
    private readonly room: Room,
    private readonly hostKey: string,
    private readonly languages: Language[],
  ) {
    this.links.replaceChildren();
    this.linksError.textContent = this.settingsStatus.textContent = this.endStatus.textContent = '';
    byId('make-links', HTMLButtonElement).onclick = () => void this.makeLinks();
    this.settingsForm.onsubmit = (event) => {
      event.preventDefault();
      void this.saveSettings();
    };
    this.endButton.onclick = () => void this.endOrStart();
    room
      .on(RoomEvent.ActiveSpeakersChanged, this.refresh)
      .on(RoomEvent.ParticipantConnected, this.refresh)
      .on(RoomEvent.ParticipantDisconnected, this.refresh)
      .on(RoomEvent.TrackPublished, this.refresh)
      .on(RoomEvent.TrackUnpublished, this.refresh)
      .on(RoomEvent.LocalTrackPublished, this.refresh)
      .on(RoomEvent.ParticipantAttributesChanged, this.refresh);
    show(this.panel, true);
    this.showSpeakers();
    // the settings can be edited once the room's own are shown: a slow first read must not overwrite what the
    // host typed (or saved) meanwhile
    this.editable(false);
    void this.load();
  }

  private editable(on: boolean): void {
    for (const element of Array.from(this.settingsForm.elements)) {
      (element as HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement | HTMLButtonElement).disabled = !on;
    }
  }

  close(): void {
    show(this.panel, false); // (the room's listeners go with the session)
  }

  private async call(path: string, body?: object): Promise<Record<string, unknown>> {
    let response: Response;
    try {
      response = await fetch(path, {
        method: body === undefined ? 'GET' : 'POST',
        headers: { Authorization: `Bearer ${this.hostKey}`, 'Content-Type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new Error('The server cannot be reached. Try again.');
    }
    const answer: unknown = await response.json().catch(() => undefined);
    const record = typeof answer === 'object' && answer !== null ? (answer as Record<string, unknown>) : {};
    if (!response.ok) throw new Error(typeof record.error === 'string' ? record.error : `HTTP ${response.status}`);
    return record;
  }

  private async load(): Promise<void> {
    try {
      this.showState((await this.call('api/room')) as unknown as RoomState);
    } catch (error) {
      this.settingsStatus.textContent = (error as Error).message;
    } finally {
      this.editable(true);
    }
  }

  private showState(state: RoomState): void {
    this.state = state;
    this.targets.value = (state.settings.target_languages ?? []).join(', ');
    this.formality.value = FORMALITIES.includes(state.settings.formality ?? '') ? state.settings.formality! : 'neutral';
    this.keep.value = (state.settings.glossary?.keep ?? []).join('\n');
    this.endButton.textContent = state.interpreting ? 'End the interpretation' : 'Start the interpretation again';
    this.endButton.dataset.interpreting = String(state.interpreting);
  }

  /** A link per role, and one per interpreted language for listeners ("listen in Spanish"). */
  private async makeLinks(): Promise<void> {
    this.linksError.textContent = '';
    const interpreted = new Set<string>(this.state?.settings.target_languages ?? []);
    for (const participant of this.room.remoteParticipants.values()) {
      for (const code of (participant.attributes[ATTR_LANGUAGES] ?? '').split(',')) if (code) interpreted.add(code);
    }
    const wanted: { label: string; role: string; language?: string }[] = [
      { label: 'Speakers', role: 'speaker' },
      { label: 'Listeners (any language)', role: 'listener' },
      ...[...interpreted].map((code) => ({ label: `Listen in ${this.nameOf(code)}`, role: 'listener', language: code })),
    ];
    const rows: HTMLLIElement[] = [];
    try {
      for (const link of wanted) {
        const body = { role: link.role, expires_in_s: Number(this.valid.value), language: link.language };
        const made = await this.call('api/invite', body);
        rows.push(this.linkRow(link.label, `${location.origin}${location.pathname}#invite=${String(made.invite)}`, link));
      }
    } catch (error) {
      this.linksError.textContent = (error as Error).message;
    }
    this.links.replaceChildren(...rows);
  }

  private linkRow(label: string, url: string, link: { role: string; language?: string }): HTMLLIElement {
    const row = document.createElement('li');
    row.dataset.role = link.role;
    if (link.language) row.dataset.language = link.language;
    const name = document.createElement('span');
    name.textContent = label;
    const field = document.createElement('input');
    field.readOnly = true;
    field.value = url;
    field.setAttribute('aria-label', `${label}: invite link`);
    const copy = document.createElement('button');
    copy.type = 'button';
    copy.textContent = 'Copy';
    copy.onclick = () => {
      field.select();
      navigator.clipboard?.writeText(url).then(
        () => (copy.textContent = 'Copied'),
        () => (copy.textContent = 'Select and copy'),
      );
    };
    row.append(name, field, copy);
    return row;
  }

  private nameOf(code: string): string {
    return this.languages.find((language) => language.code === code)?.name ?? code;
  }

  private async saveSettings(): Promise<void> {
    const codes = this.targets.value.split(/[\s,]+/).filter((code) => code !== '');
    const keep = this.keep.value.split('\n').map((term) => term.trim()).filter((term) => term !== '');
    const earlier = this.state?.settings.glossary ?? {};
    // the terms to translate (set by other means) are kept; no terms at all: no glossary
    const glossary = keep.length > 0 || earlier.translate !== undefined ? { ...earlier, keep } : null;
    this.settingsStatus.textContent = 'Saving…';
    try {
      const answer = await this.call('api/room/settings', {
        target_languages: codes,
        formality: this.formality.value,
        glossary,
      });
      this.showState({ ...(this.state as RoomState), settings: answer.settings as RoomState['settings'] });
      this.settingsStatus.textContent = 'Saved: the interpreter applies it now.';
    } catch (error) {
      this.settingsStatus.textContent = (error as Error).message;
    }
  }

  private async endOrStart(): Promise<void> {
    const ending = this.state?.interpreting !== false;
    if (ending && !window.confirm('End the interpretation for everyone in this room?')) return;
    this.endButton.disabled = true;
    try {
      const answer = await this.call(ending ? 'api/room/end' : 'api/room/start', {});
      if (this.state !== undefined) this.showState({ ...this.state, interpreting: answer.interpreting === true });
      this.endStatus.textContent = ending ? 'The interpretation has ended.' : 'The interpreter is coming back.';
    } catch (error) {
      this.endStatus.textContent = (error as Error).message;
    } finally {
      this.endButton.disabled = false;
    }
  }

  /** Who publishes a microphone (people, not the interpreter): speaking now or not, their language, and
   * the voice they are interpreted in. */
  private showSpeakers(): void {
    const people = [this.room.localParticipant, ...this.room.remoteParticipants.values()].filter(
      (p) => !p.isAgent && p.getTrackPublication(Track.Source.Microphone) !== undefined,
    );
    this.speakers.replaceChildren(
      ...people.map((participant) => {
        const row = document.createElement('li');
        row.dataset.speaking = String(participant.isSpeaking);
        row.dataset.voice = voiceOf(participant);
        const language = participant.attributes[ATTR_LANGUAGE];
        const spoken = language ? this.nameOf(language) : 'language detected';
        const you = participant === this.room.localParticipant ? ' (you)' : '';
        row.textContent = `${participant.isSpeaking ? '● ' : ''}${participant.name || 'A speaker'}${you}: ${spoken}, ${voiceOf(participant)}`;
        return row;
      }),
    );
    if (people.length === 0) this.speakers.textContent = 'Nobody is speaking yet.';
  }
}
