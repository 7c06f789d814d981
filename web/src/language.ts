// Language codes as people and BCP-47 libraries write them ("ES", " pt-br ", "es_419", "zh-Hant-TW", "iw") in
// the one form the interpreter uses for participants' languages, its tracks (`interpretation-<code>`) and its
// captions: the base language, lowercase ("es", "pt", "zh", "he"). The same rules as agent/language/codes.py
// (`participant_language`), checked against the same vectors (language-codes.json, tests/test_room_contract.py).

const TAG = /^[a-z]{2,3}(-[a-z0-9]{2,8})*$/i;
const MAX_CODE_CHARS = 35; // BCP-47 asks for at least 35; anything longer is not a code
const ALIASES: Record<string, string> = { iw: 'he', in: 'id', nb: 'no', fil: 'tl' };

let supported: ReadonlySet<string> = new Set();

/** The languages the interpreter takes (the page's /api/config): codes outside them are not languages here. */
export function useSupportedLanguages(codes: Iterable<string>): void {
  supported = new Set(codes);
}

/** The base language of a code in any spelling, if it is a supported one; else undefined. */
export function canonicalLanguage(raw: string | null | undefined): string | undefined {
  if (typeof raw !== 'string') return undefined;
  const code = raw.trim().replace(/_/g, '-');
  if (code.length > MAX_CODE_CHARS || !TAG.test(code)) return undefined;
  const base = code.split('-', 1)[0].toLowerCase();
  const language = ALIASES[base] ?? base;
  return supported.has(language) ? language : undefined;
}

/** Whether two codes (any spelling) name the same supported language. */
export function sameLanguage(a: string | undefined, b: string | undefined): boolean {
  const first = canonicalLanguage(a);
  return first !== undefined && first === canonicalLanguage(b);
}
