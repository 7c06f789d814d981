// What the listener sees of the machinery: the connection and its reconnects, the interpreter's state (or
// that the room waits for one, or lost the one it had and is getting another), faults, warnings, a spent
// budget, and the button the browser's autoplay policy may require before audio plays.
import { ConnectionState, type Room, RoomEvent } from 'livekit-client';
import {
  ATTR_AGENT_STATE,
  ATTR_BUDGET_REACHED,
  ATTR_FAULTS,
  ATTR_WARNINGS,
  describeBudget,
  describeFaults,
  parseWarnings,
} from './agent';
import { byId, show } from './dom';
import type { Interpreters } from './interpreters';

const CONNECTION_TEXT: Record<string, string> = {
  connecting: 'Connecting…',
  connected: 'Connected',
  reconnecting: 'Connection lost, reconnecting…',
  disconnected: 'Disconnected',
};

const AGENT_TEXT: Record<string, string> = {
  waiting: 'Waiting for an interpreter…',
  reconnecting: 'Interpreter lost, reconnecting…',
  initializing: 'Starting…',
  listening: 'Listening',
  thinking: 'Thinking',
  speaking: 'Speaking',
};

export class StatusView {
  private readonly connection = byId('connection', HTMLElement);
  private readonly agentState = byId('agent-state', HTMLElement);
  private readonly faults = byId('faults', HTMLElement);
  private readonly warnings = byId('warnings', HTMLElement);
  private readonly budget = byId('budget', HTMLElement);
  private readonly startAudio = byId('start-audio', HTMLButtonElement);
  private reconnects = 0;

  constructor(
    private readonly room: Room,
    private readonly interpreters: Interpreters,
  ) {
    room
      .on(RoomEvent.ConnectionStateChanged, () => this.showConnection())
      .on(RoomEvent.Reconnected, () => {
        this.reconnects += 1;
        this.showConnection();
      })
      .on(RoomEvent.AudioPlaybackStatusChanged, () => this.showAudioGate());
    this.startAudio.onclick = () => {
      // a click is the gesture the browser waits for; the status event hides the button once audio plays
      room.startAudio().catch(() => this.showAudioGate());
    };
    this.showConnection();
    this.showAgent();
    this.showAudioGate();
  }

  /** The interpreter's state, faults and warnings, read again (one came, left, went stale, or changed its
   * attributes). */
  showAgent(): void {
    const agent = this.interpreters.primary;
    const state =
      agent === undefined ? this.interpreters.presence : (agent.attributes[ATTR_AGENT_STATE] ?? 'initializing');
    this.agentState.dataset.state = state;
    this.agentState.textContent = AGENT_TEXT[state] ?? state;
    const faults = describeFaults(agent?.attributes[ATTR_FAULTS]);
    this.faults.textContent = faults.length > 0 ? `Problem: ${faults.join('; ')}.` : '';
    show(this.faults, faults.length > 0);
    const warnings = parseWarnings(agent?.attributes[ATTR_WARNINGS]);
    this.warnings.textContent = warnings.length > 0 ? `Note: ${warnings.join('; ')}` : '';
    show(this.warnings, warnings.length > 0);
    this.budget.textContent = describeBudget(agent?.attributes[ATTR_BUDGET_REACHED]);
    show(this.budget, this.budget.textContent !== '');
  }

  showAudioGate(): void {
    show(this.startAudio, this.room.state === ConnectionState.Connected && !this.room.canPlaybackAudio);
  }

  private showConnection(): void {
    // a signal-only reconnect is still a reconnect for the person watching
    const state = this.room.state === ConnectionState.SignalReconnecting ? 'reconnecting' : this.room.state;
    this.connection.dataset.state = state;
    let text = CONNECTION_TEXT[state] ?? state;
    if (state === 'connected' && this.reconnects > 0) {
      text += ` (reconnected ${this.reconnects === 1 ? 'once' : `${this.reconnects} times`})`;
    }
    this.connection.textContent = text;
    this.showAudioGate();
  }
}
