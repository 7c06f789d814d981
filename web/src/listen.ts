// Which audio the page receives and how loud: with autoSubscribe off, exactly the chosen language's track of
// every live interpreter of ours (two only during a handover, and they never speak at once); speakers who
// already speak that language (their `language` attribute, or for those whose language the interpreter
// detects, the language of their latest caption) at full volume; the others only when the listener asks for
// the original underneath, at that volume, ducked while the interpretation plays. What it receives of the
// interpretation it tells the interpreter (declare.ts).
import {
  RemoteAudioTrack,
  type RemoteParticipant,
  type RemoteTrack,
  type RemoteTrackPublication,
  type Room,
  RoomEvent,
  Track,
} from 'livekit-client';
import { onlyHeartbeat, TRACK_PREFIX } from './agent';
import { ListeningDeclaration } from './declare';
import type { Interpreters } from './interpreters';
import { sameLanguage } from './language';

const DUCKED = 1 / 3; // the original's share of its volume while the interpreter speaks
const ATTR_LANGUAGE = 'language';

export class Listening {
  private language: string;
  private originalVolume = 0; // 0..1; 0 = the original speakers are not received at all
  private readonly detected = new Map<string, string>(); // identity -> the language of their latest caption
  private readonly declaration: ListeningDeclaration;

  constructor(
    private readonly room: Room,
    private readonly interpreters: Interpreters,
    private readonly audio: HTMLElement,
    private readonly hearing: HTMLElement,
    private readonly nameOf: (code: string) => string,
    language: string,
  ) {
    this.language = language;
    this.declaration = new ListeningDeclaration(room);
    room
      .on(RoomEvent.TrackPublished, () => this.reconcile())
      .on(RoomEvent.TrackUnpublished, () => this.reconcile())
      .on(RoomEvent.ParticipantConnected, () => this.reconcile())
      .on(RoomEvent.ParticipantAttributesChanged, (changed) => {
        if (onlyHeartbeat(changed)) return; // (a heartbeat that changes who is live comes through Interpreters)
        this.reconcile();
        this.applyVolumes();
      })
      .on(RoomEvent.Reconnected, () => this.reconcile())
      .on(RoomEvent.TrackSubscribed, (track, publication, participant) =>
        this.onSubscribed(track, publication, participant),
      )
      .on(RoomEvent.TrackUnsubscribed, (track) => {
        for (const element of track.detach()) element.remove();
        this.showHearing();
      })
      .on(RoomEvent.ParticipantDisconnected, () => this.showHearing());
  }

  get currentLanguage(): string {
    return this.language;
  }

  setLanguage(language: string): void {
    this.language = language;
    this.reconcile();
    this.applyVolumes();
  }

  /** A speaker with no `language` attribute said something the interpreter heard as `language` (their
   * caption's): in this page's language they come through as they are, as speakers who set it do. */
  noteDetected(identity: string, language: string): void {
    if (this.detected.get(identity) === language) return;
    this.detected.set(identity, language);
    this.reconcile();
    this.applyVolumes();
  }

  /** `percent` 0–100 from the slider. */
  setOriginalVolume(percent: number): void {
    this.originalVolume = Math.min(Math.max(percent, 0), 100) / 100;
    this.reconcile();
    this.applyVolumes();
  }

  /** Subscribes to what is wanted and unsubscribes from the rest; safe to call at any time. */
  reconcile(): void {
    for (const participant of this.room.remoteParticipants.values()) {
      for (const publication of participant.audioTrackPublications.values()) {
        const wanted = this.wants(participant, publication);
        if (publication.isDesired !== wanted) publication.setSubscribed(wanted);
      }
    }
    this.showHearing();
  }

  /** Whether the chosen language's interpretation is coming in, about to, or not published (yet); and the
   * room told whether it comes in. */
  private showHearing(): void {
    const name = this.nameOf(this.language);
    const track = `${TRACK_PREFIX}${this.language}`;
    const publications = this.interpreters.live.flatMap((agent) =>
      [...agent.trackPublications.values()].filter((p) => p.trackName === track),
    );
    const receiving = publications.some((publication) => publication.isSubscribed);
    this.declaration.playing(receiving ? this.language : undefined);
    let state: string;
    let text: string;
    if (receiving) {
      [state, text] = ['receiving', `${name} interpretation`];
    } else if (publications.length > 0) {
      [state, text] = ['starting', `${name} interpretation (starting…)`];
    } else if (this.interpreters.live.length === 0) {
      [state, text] = ['waiting', `${name}, once an interpreter joins`];
    } else {
      [state, text] = ['waiting', `${name}, as soon as the interpreter adds it…`];
    }
    this.hearing.dataset.state = state;
    this.hearing.textContent = text;
  }

  private wants(participant: RemoteParticipant, publication: RemoteTrackPublication): boolean {
    if (participant.isAgent) {
      return this.interpreters.isLive(participant) && publication.trackName === `${TRACK_PREFIX}${this.language}`;
    }
    if (publication.source !== Track.Source.Microphone) return false;
    return this.speaksMyLanguage(participant) || this.originalVolume > 0;
  }

  private speaksMyLanguage(participant: RemoteParticipant): boolean {
    const spoken = participant.attributes[ATTR_LANGUAGE] || this.detected.get(participant.identity);
    return sameLanguage(spoken, this.language);
  }

  private onSubscribed(track: RemoteTrack, publication: RemoteTrackPublication, participant: RemoteParticipant): void {
    if (track.kind !== Track.Kind.Audio) return;
    if (!this.wants(participant, publication)) {
      publication.setSubscribed(false); // wanted when asked, no longer by the time it came
      return;
    }
    const element = track.attach();
    this.audio.append(element);
    this.applyVolumes();
    this.showHearing();
  }

  /** The interpretation at full volume; the original at the slider's volume, a third of it while ducked. */
  applyVolumes(): void {
    const speaking = this.interpreters.speaking;
    for (const participant of this.room.remoteParticipants.values()) {
      for (const publication of participant.audioTrackPublications.values()) {
        const track = publication.audioTrack;
        if (!(track instanceof RemoteAudioTrack)) continue;
        let volume = 1;
        if (!participant.isAgent && !this.speaksMyLanguage(participant)) {
          volume = this.originalVolume * (speaking ? DUCKED : 1);
        }
        track.setVolume(volume);
      }
    }
  }
}
