// What a reader can take away: the captions they read, as plain text, SRT or WebVTT, made in the browser from
// what it received (nothing is asked of the server). Final segments only, each with its speaker's name and
// language as the page showed them, timed from when the page joined the room: a cue starts when the page
// first received the segment (its first interim) and ends when its final came. The file is offered through a
// Blob and an <a download>.

import type { CaptionKind, CaptionUpdate } from './captions';

export type DownloadFormat = 'txt' | 'srt' | 'vtt';

export interface Cue {
  /** Milliseconds since the page joined. */
  startMs: number;
  endMs: number;
  kind: CaptionKind;
  speaker: string;
  language: string;
  text: string;
}

// a long meeting never grows the page without bound: 20 000 cues is a day of talk; the oldest go first
const MAX_CUES = 20_000;
const MIN_CUE_MS = 1_000; // a final with no interim before it still shows for a moment

const TYPES: Record<DownloadFormat, string> = {
  txt: 'text/plain;charset=utf-8',
  srt: 'application/x-subrip;charset=utf-8',
  vtt: 'text/vtt;charset=utf-8',
};

/** The final captions received since the page joined, in the order the page received them. As the caption
 * list does (captions.ts), a segment is final once: a late interim never undoes it, and a later version under
 * its id is a new interpreter's segment, a cue of its own. */
export class Transcript {
  private readonly firstSeen = new Map<string, number>(); // unfinished segments: when the first version came
  private readonly finalSentAt = new Map<string, number>(); // final segments: their final's timestamp
  private readonly received: Cue[] = [];
  private joinedAt: number;
  room = '';

  constructor(private readonly now: () => number = () => performance.now()) {
    this.joinedAt = now();
  }

  /** A new session: nothing received yet, times counted from now. */
  start(room: string): void {
    this.firstSeen.clear();
    this.finalSentAt.clear();
    this.received.length = 0;
    this.joinedAt = this.now();
    this.room = room;
  }

  note(caption: CaptionUpdate): void {
    const key = `${caption.kind}:${caption.segmentId}`;
    const finalSentAt = this.finalSentAt.get(key);
    if (finalSentAt !== undefined) {
      if (caption.sentAt <= finalSentAt) return;
      this.finalSentAt.delete(key);
    }
    const at = Math.max(0, this.now() - this.joinedAt);
    if (caption.final && caption.text.trim() === '') {
      this.firstSeen.delete(key); // withdrawn: never said
      return;
    }
    const startMs = this.firstSeen.get(key) ?? at;
    if (!caption.final) {
      this.firstSeen.set(key, startMs);
      if (this.firstSeen.size > MAX_CUES) this.firstSeen.delete(this.firstSeen.keys().next().value ?? '');
      return;
    }
    this.firstSeen.delete(key);
    this.finalSentAt.set(key, caption.sentAt);
    this.received.push({
      startMs,
      endMs: Math.max(at, startMs + MIN_CUE_MS),
      kind: caption.kind,
      speaker: caption.speakerName,
      language: caption.language,
      text: caption.text,
    });
    if (this.received.length > MAX_CUES) this.received.shift();
    if (this.finalSentAt.size > MAX_CUES) this.finalSentAt.delete(this.finalSentAt.keys().next().value ?? '');
  }

  /** The interpreter was lost: what it had not finished never will be. */
  letGoOfUnfinished(): void {
    this.firstSeen.clear();
  }

  /** The cues by start time (those starting together in the order received). */
  cues(): Cue[] {
    return [...this.received].sort((a, b) => a.startMs - b.startMs);
  }
}

/** `HH:MM:SS<separator>mmm`: hours run past 99 if a meeting does. */
export function timestamp(ms: number, separator: ',' | '.'): string {
  const total = Math.max(0, Math.round(ms));
  const pad = (n: number, width = 2): string => String(n).padStart(width, '0');
  const hours = Math.floor(total / 3_600_000);
  const minutes = Math.floor(total / 60_000) % 60;
  const seconds = Math.floor(total / 1000) % 60;
  return `${pad(hours)}:${pad(minutes)}:${pad(seconds)}${separator}${pad(total % 1000, 3)}`;
}

/** A cue's lines: no `-->` (a cue timing line's arrow) and no blank line (a cue's end) inside. */
function lines(text: string): string[] {
  return text
    .replace(/-->/g, '→')
    .split(/\r\n|\r|\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '');
}

/** Who said it, in which language: "Alice (en)", "Alice (es, interpreted)". */
function label(cue: Cue): string {
  const language = cue.kind === 'translation' ? `${cue.language}, interpreted` : cue.language;
  return lines(`${cue.speaker} (${language})`).join(' ');
}

function vttEscape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function format(cues: Cue[], kind: DownloadFormat, room = ''): string {
  const spoken = cues.filter((cue) => lines(cue.text).length > 0);
  if (kind === 'txt') {
    const header = `Captions${room ? ` of room ${room}` : ''}, times from joining`;
    const body = spoken.map(
      (cue) => `[${timestamp(cue.startMs, '.').slice(0, -4)}] ${label(cue)}: ${lines(cue.text).join(' ')}`,
    );
    return [header, '', ...body].join('\n') + '\n';
  }
  const separator = kind === 'srt' ? ',' : '.';
  const blocks = spoken.map((cue, i) => {
    const timing = `${timestamp(cue.startMs, separator)} --> ${timestamp(cue.endMs, separator)}`;
    const [first, ...rest] = lines(cue.text);
    const text = [`${label(cue)}: ${first}`, ...rest];
    return kind === 'srt'
      ? [String(i + 1), timing, ...text].join('\n')
      : [timing, ...text.map(vttEscape)].join('\n');
  });
  const head = kind === 'vtt' ? ['WEBVTT'] : [];
  return [...head, ...blocks].join('\n\n') + '\n';
}

/** Offers `content` as a file named `filename`: a Blob behind an <a download>, clicked. */
export function offer(filename: string, content: string, type: string): void {
  const url = URL.createObjectURL(new Blob([content], { type }));
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000); // (the download has its bytes by then)
}

/** `captions-<room>-<yyyymmdd-hhmm>.<ext>`, local time. */
export function filename(room: string, kind: DownloadFormat, at: Date = new Date()): string {
  const pad = (n: number): string => String(n).padStart(2, '0');
  const day = `${at.getFullYear()}${pad(at.getMonth() + 1)}${pad(at.getDate())}`;
  const time = `${pad(at.getHours())}${pad(at.getMinutes())}`;
  return `captions-${room || 'room'}-${day}-${time}.${kind}`;
}

/** The buttons inside `container` with a `data-format` download the transcript in their format. */
export function setupDownloads(container: HTMLElement, transcript: Transcript): void {
  container.addEventListener('click', (event) => {
    const button = event.target instanceof Element ? event.target.closest('button[data-format]') : null;
    if (!(button instanceof HTMLButtonElement)) return;
    const kind = button.dataset.format;
    if (kind !== 'txt' && kind !== 'srt' && kind !== 'vtt') return;
    offer(filename(transcript.room, kind), format(transcript.cues(), kind, transcript.room), TYPES[kind]);
  });
}
