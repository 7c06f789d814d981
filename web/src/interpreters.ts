// Which interpreters of ours are in the room and live, and what the listener is told about them: waiting for
// one (none came yet), or reconnecting (the one there was went stale or left, and no other is live).
//
// Ours: an agent whose `lk.agent.name` is the interpreter's agent name (/api/config). Live: its
// `interpreter.alive` heartbeat (rewritten every second) changed less than STALE_MS ago. The page times the
// beats with its own clock, from the moment it sees each new value, so a listener's device whose clock is off
// does not take every interpreter for stale; only a value it sees for the first time is aged by the wall
// clocks, so one that stopped beating before the page came is not taken for live (a clock ahead costs no
// more than the wait for the next beat).
// An interpreter with no heartbeat at all counts as live (one that does not beat: it is live while it is in
// the room). Two are live at once only during a handover; the page plays both (they never speak at once).
import { ConnectionState, type RemoteParticipant, type Room, RoomEvent } from 'livekit-client';
import {
  ATTR_AGENT_NAME,
  ATTR_AGENT_STATE,
  ATTR_ALIVE,
  ATTR_DRAINING,
  ATTR_STANDBY,
  ATTR_STARTED_AT,
} from './agent';

const STALE_MS = 3500; // the contract's STALE_S
const TICK_MS = 500; // how often staleness is looked at (beats themselves come as attribute events)

/** `waiting`: no live interpreter since the page joined; `live`: one or more; `reconnecting`: the page had
 * one, and none is live now. */
export type Presence = 'waiting' | 'live' | 'reconnecting';

interface Beat {
  value: string;
  seenAt: number; // performance.now() when the page saw this value (aged by the wall clocks at first sight)
}

export class Interpreters {
  private readonly beats = new Map<string, Beat>(); // identity -> its latest heartbeat
  private liveNow: RemoteParticipant[] = [];
  private had = false; // a live interpreter was seen since the page joined
  private key = ''; // the live identities and the presence, to tell when they change
  private readonly timer: number;

  constructor(
    private readonly room: Room,
    private readonly agentName: string,
    private readonly onChange: () => void,
  ) {
    const look = (): void => this.look();
    room
      .on(RoomEvent.ParticipantConnected, look)
      .on(RoomEvent.ParticipantAttributesChanged, look)
      .on(RoomEvent.ParticipantDisconnected, (participant) => {
        this.beats.delete(participant.identity);
        this.look();
      })
      .on(RoomEvent.Reconnected, () => {
        // no beat could arrive while the page itself was cut off: every interpreter gets a fresh grace
        const now = performance.now();
        for (const beat of this.beats.values()) beat.seenAt = now;
        this.look();
      });
    this.timer = window.setInterval(look, TICK_MS);
  }

  /** Stops watching (the session ended). */
  close(): void {
    window.clearInterval(this.timer);
  }

  /** The live interpreters of ours, the one interpreting first (not in standby, not draining, then the
   * older: the never-two rule's order). */
  get live(): readonly RemoteParticipant[] {
    return this.liveNow;
  }

  /** The one whose state, faults and warnings the page shows. */
  get primary(): RemoteParticipant | undefined {
    return this.liveNow[0];
  }

  get presence(): Presence {
    if (this.liveNow.length > 0) return 'live';
    return this.had ? 'reconnecting' : 'waiting';
  }

  isLive(participant: RemoteParticipant): boolean {
    return this.liveNow.includes(participant);
  }

  /** Whether a live interpreter is speaking now (the original is ducked under it). */
  get speaking(): boolean {
    return this.liveNow.some((p) => p.attributes[ATTR_AGENT_STATE] === 'speaking');
  }

  /** Reads the room again; tells `onChange` when the live interpreters or the presence changed. Safe to call
   * at any time. */
  look(): void {
    // while the page itself is cut off, no beat can come: what it knew stands until it is back
    if (this.room.state !== ConnectionState.Connected) return;
    const now = performance.now();
    const live = [...this.room.remoteParticipants.values()].filter(
      (p) => this.isOurs(p) && this.beating(p, now),
    );
    live.sort(byRole);
    this.liveNow = live;
    if (live.length > 0) this.had = true;
    const key = `${this.presence}:${live.map((p) => p.identity).join(',')}`;
    if (key === this.key) return;
    this.key = key;
    this.onChange();
  }

  private isOurs(participant: RemoteParticipant): boolean {
    return participant.isAgent && participant.attributes[ATTR_AGENT_NAME] === this.agentName;
  }

  private beating(participant: RemoteParticipant, now: number): boolean {
    const value = participant.attributes[ATTR_ALIVE];
    if (value === undefined || value === '') return true; // no heartbeat (yet)
    let beat = this.beats.get(participant.identity);
    if (beat === undefined || beat.value !== value) {
      // a value seen for the first time is as old as the wall clocks say; a new value seen while watching
      // is a beat now
      const age = beat === undefined ? wallAge(value) : 0;
      beat = { value, seenAt: now - age };
      this.beats.set(participant.identity, beat);
    }
    return now - beat.seenAt <= STALE_MS;
  }
}

function wallAge(value: string): number {
  const age = Date.now() - Number(value);
  return Number.isFinite(age) ? Math.max(age, 0) : 0;
}

/** Interpreting before standing by, staying before draining, then older `(started_at, identity)` first. */
function byRole(a: RemoteParticipant, b: RemoteParticipant): number {
  const rank = (p: RemoteParticipant): number =>
    (p.attributes[ATTR_STANDBY] === 'true' ? 2 : 0) + (p.attributes[ATTR_DRAINING] === 'true' ? 1 : 0);
  const started = (p: RemoteParticipant): number => Number(p.attributes[ATTR_STARTED_AT] ?? '') || 0;
  return (
    rank(a) - rank(b) || started(a) - started(b) || (a.identity < b.identity ? -1 : a.identity > b.identity ? 1 : 0)
  );
}
