// The page's `listening_to` attribute: the interpretation it plays, so that the interpreter synthesizes a
// language only while someone hears it (docs/room-contract.md). Set only when the value changes (LiveKit
// sends every set to everyone in the room); a set that failed is tried again at the next change or reconnect.
import { ConnectionState, type Room, RoomEvent } from 'livekit-client';
import { ATTR_LISTENING_TO, LISTENING_TO_NONE } from './agent';

export class ListeningDeclaration {
  private wanted: string | undefined;
  private held: string | undefined; // what the room has from this page; undefined: nothing yet, or unsure
  private sending = false;

  constructor(private readonly room: Room) {
    room
      .on(RoomEvent.Connected, () => this.send())
      .on(RoomEvent.Reconnected, () => {
        this.held = undefined; // a full reconnect rejoins with the token's attributes only
        this.send();
      });
  }

  /** `language`: the base code of the interpretation track(s) the page receives; undefined: none. */
  playing(language: string | undefined): void {
    const value = language ?? LISTENING_TO_NONE;
    if (value === this.wanted) return;
    this.wanted = value;
    this.send();
  }

  private send(): void {
    const value = this.wanted;
    if (value === undefined || value === this.held || this.sending) return;
    if (this.room.state !== ConnectionState.Connected) return;
    this.sending = true;
    this.room.localParticipant.setAttributes({ [ATTR_LISTENING_TO]: value }).then(
      () => {
        this.sending = false;
        this.held = value;
        this.send(); // the page may have moved on meanwhile
      },
      () => {
        this.sending = false;
        this.held = undefined;
      },
    );
  }
}
