// A speaker's controls: the microphone on and off, and the language they speak (their `language` attribute).
import { type Room, RoomEvent } from 'livekit-client';
import { byId, show } from './dom';

export class Speaking {
  private readonly mic = byId('mic', HTMLButtonElement);
  private readonly error = byId('mic-error', HTMLElement);
  private busy = false;

  constructor(private readonly room: Room) {
    show(byId('mic-field', HTMLElement), true);
    this.mic.onclick = () => {
      void this.setMicrophone(!this.room.localParticipant.isMicrophoneEnabled);
    };
    const refresh = (): void => this.showMicrophone();
    room
      .on(RoomEvent.LocalTrackPublished, refresh)
      .on(RoomEvent.LocalTrackUnpublished, refresh)
      .on(RoomEvent.TrackMuted, refresh)
      .on(RoomEvent.TrackUnmuted, refresh);
    this.showMicrophone();
  }

  async setMicrophone(enabled: boolean): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    this.mic.disabled = true;
    this.error.textContent = '';
    try {
      await this.room.localParticipant.setMicrophoneEnabled(enabled);
    } catch (error) {
      const denied = error instanceof DOMException && error.name === 'NotAllowedError';
      this.error.textContent = denied
        ? 'The browser was not allowed to use the microphone: allow it in the address bar, then try again.'
        : 'The microphone could not be started. Check that one is connected, then try again.';
    } finally {
      this.busy = false;
      this.mic.disabled = false;
      this.showMicrophone();
    }
  }

  /** Says which language this speaker speaks; the interpreter listens for it from the next words on. */
  async setSpokenLanguage(language: string): Promise<void> {
    await this.room.localParticipant.setAttributes({ language });
  }

  private showMicrophone(): void {
    const on = this.room.localParticipant.isMicrophoneEnabled;
    this.mic.setAttribute('aria-pressed', on ? 'true' : 'false');
    this.mic.textContent = on ? 'Microphone on (click to mute)' : 'Microphone off (click to speak)';
  }
}
