// The caption list: one element per segment, interim versions replaced in place, finals marked, and the
// view kept at the bottom unless the reader scrolled up to read (then a button offers the new captions).
// Segment ids are an interpreter's own count per speaker: an interpreter that takes a room over (after one
// was lost, or in a handover) counts from the start again, so an id says which caption to update only until
// that caption is final, or its interpreter lost.

export type CaptionKind = 'source' | 'translation';

export interface CaptionUpdate {
  segmentId: string;
  final: boolean;
  kind: CaptionKind;
  language: string;
  languageName: string;
  /** A speaker's words whose language the interpreter detected (the speaker set none). */
  detected: boolean;
  speakerName: string;
  text: string;
  /** When the sender wrote it (the text stream's timestamp, unix ms). */
  sentAt: number;
}

const MAX_CAPTIONS = 300; // the oldest go first: a long meeting never grows the page without bound
const AT_BOTTOM_PX = 32; // closer than this to the bottom counts as "following along"

export class CaptionList {
  private readonly bySegment = new Map<string, HTMLElement>();
  private following = true;

  constructor(
    private readonly container: HTMLElement,
    private readonly newCaptions: HTMLButtonElement,
  ) {
    container.addEventListener('scroll', () => this.onScroll(), { passive: true });
    newCaptions.addEventListener('click', () => this.scrollToEnd());
  }

  /** Adds a segment's first version, or replaces its text in place; an empty final withdraws it. */
  update(caption: CaptionUpdate): void {
    const key = `${caption.kind}:${caption.segmentId}`;
    let element = this.bySegment.get(key);
    if (element?.dataset.final === 'true') {
      // a segment is final once: what comes later under its id was either written before the final (a late
      // interim, which never undoes it) or is a new interpreter's segment (a caption of its own)
      if (caption.sentAt <= Number(element.dataset.sentAt)) return;
      this.bySegment.delete(key);
      element = undefined;
    }
    if (caption.final && caption.text.trim() === '') {
      // the speech-to-text took back what it had heard: no stale interim stays on screen
      if (element !== undefined) {
        element.remove();
        this.bySegment.delete(key);
      }
      return;
    }
    if (element === undefined) {
      element = this.create(caption);
      this.bySegment.set(key, element);
      this.container.append(element);
      this.trim();
    }
    element.dataset.final = caption.final ? 'true' : 'false';
    element.dataset.sentAt = String(caption.sentAt);
    element.setAttribute('aria-busy', caption.final ? 'false' : 'true'); // screen readers wait for the final
    // (a detected language may change from the interim to the final)
    element.dataset.language = caption.language;
    const language = element.querySelector('.caption-language');
    if (language !== null) language.textContent = languageLabel(caption);
    const text = element.querySelector('.caption-text');
    if (text instanceof HTMLElement) {
      text.textContent = caption.text;
      text.lang = caption.language;
    }
    this.afterChange();
  }

  /** Called after the captions' layout changed (text size, window size): a reader following stays at the end. */
  relayout(): void {
    if (this.following) this.container.scrollTop = this.container.scrollHeight;
  }

  /** The interpreter was lost: the segments it had not finished never will be; they stay on screen, and a
   * new interpreter's segments with the same ids become captions of their own. */
  letGoOfUnfinished(): void {
    for (const [key, element] of this.bySegment) {
      if (element.dataset.final !== 'true') this.bySegment.delete(key);
    }
  }

  clear(): void {
    this.bySegment.clear();
    this.container.replaceChildren();
    this.following = true;
    this.newCaptions.hidden = true;
  }

  private create(caption: CaptionUpdate): HTMLElement {
    const element = document.createElement('p');
    element.className = 'caption';
    element.dataset.segmentId = caption.segmentId;
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
      const key = `${oldest.dataset.kind}:${oldest.dataset.segmentId}`;
      if (this.bySegment.get(key) === oldest) this.bySegment.delete(key); // (not a newer caption with its id)
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
