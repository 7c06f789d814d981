// The caption list: one line per sentence of a speaker (their words, and apart the interpretation of them), its
// pieces' texts joined in the order they came; interim versions replaced in place, finals marked, and the view
// kept at the bottom unless the reader scrolled up to read (then a button offers the new captions).
// A piece is a segment (`lk.segment_id`); an interpreter says which sentence it belongs to (`interpreter.sentence`,
// docs/room-contract.md): the pieces of one (kind, speaker, language, sentence) share a line. A caption without
// it (an older interpreter) is a line of its own.
// Segment and sentence ids are an interpreter's own count per speaker: an interpreter that takes a room over
// (after one was lost, or in a handover) counts from the start again, so an id says which caption to update
// only until that caption is final, or its interpreter lost.

export type CaptionKind = 'source' | 'translation';

export interface CaptionUpdate {
  segmentId: string;
  /** The sentence the segment is a piece of (`interpreter.sentence`), if the interpreter says. */
  sentence?: string;
  final: boolean;
  kind: CaptionKind;
  language: string;
  languageName: string;
  /** A speaker's words whose language the interpreter detected (the speaker set none). */
  detected: boolean;
  /** Who said it (their identity). */
  speaker: string;
  speakerName: string;
  text: string;
  /** When the sender wrote it (the text stream's timestamp, unix ms). */
  sentAt: number;
}

interface Piece {
  key: string;
  text: string;
  final: boolean;
  sentAt: number;
  line: Line;
}

interface Line {
  key: string;
  element: HTMLElement;
  pieces: Piece[];
}

const MAX_CAPTIONS = 300; // lines; the oldest go first: a long meeting never grows the page without bound
const AT_BOTTOM_PX = 32; // closer than this to the bottom counts as "following along"

export class CaptionList {
  private readonly bySegment = new Map<string, Piece>();
  private readonly lines = new Map<string, Line>(); // lines that new pieces may still join
  private readonly lineOf = new WeakMap<Element, Line>();
  private following = true;

  constructor(
    private readonly container: HTMLElement,
    private readonly newCaptions: HTMLButtonElement,
  ) {
    container.addEventListener('scroll', () => this.onScroll(), { passive: true });
    newCaptions.addEventListener('click', () => this.scrollToEnd());
  }

  /** Adds a segment's first version to its sentence's line, or replaces its text in place; an empty final
   * withdraws it. */
  update(caption: CaptionUpdate): void {
    const key = `${caption.kind}:${caption.segmentId}`;
    let piece = this.bySegment.get(key);
    if (piece?.final) {
      // a segment is final once: what comes later under its id was either written before the final (a late
      // interim, which never undoes it) or is a new interpreter's segment (a caption of its own, on a new line:
      // that interpreter counts sentences from the start again too)
      if (caption.sentAt <= piece.sentAt) return;
      this.bySegment.delete(key);
      this.lines.clear();
      piece = undefined;
    }
    if (caption.final && caption.text.trim() === '') {
      // the speech-to-text took back what it had heard: no stale interim stays on screen
      if (piece !== undefined) this.withdraw(piece);
      return;
    }
    if (piece === undefined) {
      const line = this.lineFor(caption);
      piece = { key, text: '', final: false, sentAt: 0, line };
      line.pieces.push(piece);
      this.bySegment.set(key, piece);
    }
    piece.text = caption.text.trim();
    piece.final = caption.final;
    piece.sentAt = caption.sentAt;
    this.render(piece.line, caption);
    this.afterChange();
  }

  /** Called after the captions' layout changed (text size, window size): a reader following stays at the end. */
  relayout(): void {
    if (this.following) this.container.scrollTop = this.container.scrollHeight;
  }

  /** The interpreter was lost: the segments it had not finished never will be; they stay on screen, and a
   * new interpreter's segments with the same ids become captions of their own, on lines of their own. */
  letGoOfUnfinished(): void {
    for (const [key, piece] of this.bySegment) {
      if (!piece.final) this.bySegment.delete(key);
    }
    this.lines.clear();
  }

  clear(): void {
    this.bySegment.clear();
    this.lines.clear();
    this.container.replaceChildren();
    this.following = true;
    this.newCaptions.hidden = true;
  }

  /** The line a segment's first version joins: its sentence's, or a new one. */
  private lineFor(caption: CaptionUpdate): Line {
    const key =
      caption.sentence === undefined
        ? `${caption.kind}:segment:${caption.segmentId}`
        : `${caption.kind}:${caption.speaker}:${caption.language}:${caption.sentence}`;
    let line = this.lines.get(key);
    if (line === undefined || !line.element.isConnected) {
      const element = this.create(caption);
      line = { key, element, pieces: [] };
      this.lines.set(key, line);
      this.lineOf.set(element, line);
      this.container.append(element);
      this.trim();
    }
    return line;
  }

  private withdraw(piece: Piece): void {
    const line = piece.line;
    this.bySegment.delete(piece.key);
    line.pieces = line.pieces.filter((p) => p !== piece);
    if (line.pieces.length === 0) {
      line.element.remove();
      if (this.lines.get(line.key) === line) this.lines.delete(line.key);
      return;
    }
    this.render(line);
  }

  /** The line's text (its pieces' latest, joined), final once every piece is; `caption`: the latest update. */
  private render(line: Line, caption?: CaptionUpdate): void {
    const element = line.element;
    const final = line.pieces.every((p) => p.final);
    element.dataset.final = final ? 'true' : 'false';
    element.dataset.sentAt = String(Math.max(...line.pieces.map((p) => p.sentAt)));
    element.setAttribute('aria-busy', final ? 'false' : 'true'); // screen readers wait for the final
    const text = element.querySelector('.caption-text');
    if (text instanceof HTMLElement) {
      text.textContent = line.pieces
        .map((p) => p.text)
        .filter((t) => t !== '')
        .join(' ');
      if (caption !== undefined) text.lang = caption.language;
    }
    if (caption === undefined) return;
    // (a detected language may change from the interim to the final)
    element.dataset.language = caption.language;
    const language = element.querySelector('.caption-language');
    if (language !== null) language.textContent = languageLabel(caption);
  }

  private create(caption: CaptionUpdate): HTMLElement {
    const element = document.createElement('p');
    element.className = 'caption';
    element.dataset.segmentId = caption.segmentId; // its first piece's
    if (caption.sentence !== undefined) element.dataset.sentence = caption.sentence;
    element.dataset.kind = caption.kind;
    const speaker = document.createElement('span');
    speaker.className = 'caption-speaker';
    speaker.textContent = caption.speakerName;
    const language = document.createElement('span');
    language.className = 'caption-language';
    const text = document.createElement('span');
    text.className = 'caption-text';
    element.append(speaker, language, text);
    return element;
  }

  private trim(): void {
    while (this.container.childElementCount > MAX_CAPTIONS) {
      const oldest = this.container.firstElementChild;
      if (!(oldest instanceof HTMLElement)) break;
      const line = this.lineOf.get(oldest);
      if (line !== undefined) {
        for (const piece of line.pieces) {
          if (this.bySegment.get(piece.key) === piece) this.bySegment.delete(piece.key); // (not a newer one)
        }
        if (this.lines.get(line.key) === line) this.lines.delete(line.key);
      }
      oldest.remove();
    }
  }

  private afterChange(): void {
    if (this.following) {
      this.container.scrollTop = this.container.scrollHeight;
    } else {
      this.newCaptions.hidden = false;
    }
  }

  private onScroll(): void {
    const { scrollTop, scrollHeight, clientHeight } = this.container;
    this.following = scrollHeight - scrollTop - clientHeight <= AT_BOTTOM_PX;
    if (this.following) this.newCaptions.hidden = true;
  }

  private scrollToEnd(): void {
    this.following = true;
    this.newCaptions.hidden = true;
    this.container.scrollTop = this.container.scrollHeight;
  }
}

/** What the caption says about its language: the interpretation's, the speaker's, or the one detected. */
function languageLabel(caption: CaptionUpdate): string {
  if (caption.kind === 'translation') return `interpreted (${caption.language})`;
  return caption.detected ? `${caption.languageName} (detected)` : caption.language;
}
