// Wiring: the join form, then one room session with its views (status, captions, listening, speaking).
import {
  ConnectionState,
  type Participant,
  type Room as RoomType,
  Room,
  RoomEvent,
  type TextStreamReader,
} from 'livekit-client';
import { ATTR_LISTENING_TO, interpretedLanguages, LISTENING_TO_NONE, onlyHeartbeat } from './agent';
import { ApiError, DETECT, fetchConfig, type Language, type Role, requestToken } from './api';
import { CaptionList } from './captions';
import { OwnVoice } from './consent';
import { byId, show } from './dom';
import { setupDownloads, Transcript } from './download';
import { HostPanel } from './host';
import { Interpreters } from './interpreters';
import { applyInvite, readInvite } from './invite';
import { canonicalLanguage, sameLanguage, useSupportedLanguages } from './language';
import { Listening } from './listen';
import { Speaking } from './speak';
import { StatusView } from './status';

declare global {
  interface Window {
    interpreterPage?: { room: RoomType };
  }
}

const TOPIC_TRANSCRIPTION = 'lk.transcription';
const ATTR_SEGMENT_ID = 'lk.segment_id';
const ATTR_SENTENCE = 'interpreter.sentence'; // the sentence a caption piece belongs to (docs/room-contract.md)
const ATTR_FINAL = 'lk.transcription_final';
const ATTR_SPEAKER = 'interpreter.speaker';
const ATTR_SPEAKER_NAME = 'interpreter.speaker_name'; // the name the interpreter first saw (a rename is not)
const ATTR_LANGUAGE = 'language';
const ROOM_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
const LARGE_TEXT_KEY = 'interpreter.large-text';

const form = byId('join-form', HTMLFormElement);
const roomInput = byId('room', HTMLInputElement);
const nameInput = byId('name', HTMLInputElement);
const roleSelect = byId('role', HTMLSelectElement);
const languageSelect = byId('language', HTMLSelectElement);
const languageLabel = byId('language-label', HTMLLabelElement);
const hearField = byId('hear-field', HTMLElement);
const detectedNames = byId('detected-languages', HTMLElement); // what detection covers, in the hint
const hearSelect = byId('hear', HTMLSelectElement);
const accessCodeField = byId('access-code-field', HTMLElement);
const accessCodeInput = byId('access-code', HTMLInputElement);
const joinButton = byId('join', HTMLButtonElement);
const joinError = byId('join-error', HTMLElement);
const session = byId('session', HTMLElement);
const languageSwitch = byId('language-switch', HTMLSelectElement);
const languageSwitchLabel = byId('language-switch-label', HTMLLabelElement);
const languageError = byId('language-error', HTMLElement);
const originalVolume = byId('original-volume', HTMLInputElement);
const originalVolumeValue = byId('original-volume-value', HTMLOutputElement);
const largeText = byId('large-text', HTMLInputElement);
const leaveButton = byId('leave', HTMLButtonElement);

const captions = new CaptionList(byId('captions', HTMLElement), byId('new-captions', HTMLButtonElement));
const transcript = new Transcript(); // what the reader can download
setupDownloads(byId('downloads', HTMLElement), transcript);

let languages: Language[] = [];
let accessCodeRequired = false;
let agentName = 'interpreter'; // the interpreter's agent name (/api/config): its agents are ours
let detectLanguage = false; // whether the interpreter detects a speaker's language (/api/config)
let chosenLanguage = 'es'; // the last language picked in the join form (not "detect")
let current: { room: RoomType; interpreters: Interpreters; ownVoice: OwnVoice; host?: HostPanel } | undefined;
const invite = readInvite(); // an invite link fixes the room and the role (invite.ts)

/** The label of the session's language switch: what it changes. */
function languageLabelFor(role: Role, detected: boolean): string {
  return role !== 'listener' && !detected ? 'Language I speak (and hear others in)' : 'Language to hear';
}

function formRole(): Role {
  return roleSelect.value === 'speaker' || roleSelect.value === 'host' ? roleSelect.value : 'listener';
}

/** The join form's language choices for its role: a speaker may have their language detected (the first
 * choice, and the default, when the interpreter detects it), and then picks the language to hear. */
function fillJoinLanguages(): void {
  const detect = formRole() !== 'listener' && detectLanguage;
  const first = detect ? { value: DETECT, label: 'Detect automatically' } : undefined;
  fillOptions(languageSelect, new Set(), detect ? DETECT : chosenLanguage, first);
  hearSelect.value = chosenLanguage;
  showHearField();
}

/** "Language to hear" under the language spoken, for a speaker whose language is detected. */
function showHearField(): void {
  const role = formRole();
  const detected = role !== 'listener' && languageSelect.value === DETECT;
  show(hearField, detected);
  languageLabel.textContent = detected ? 'Language I speak' : languageLabelFor(role, false);
}

function nameOf(code: string): string {
  return languages.find((language) => language.code === code)?.name ?? code;
}

function fillOptions(
  select: HTMLSelectElement,
  marked: Set<string>,
  selected: string,
  first?: { value: string; label: string },
): void {
  const choices = languages.map((language) => ({
    value: language.code,
    label: marked.has(language.code) ? `${language.name} ●` : language.name,
  }));
  select.replaceChildren(
    ...(first === undefined ? choices : [first, ...choices]).map((choice) => {
      const option = document.createElement('option');
      option.value = choice.value;
      option.textContent = choice.label;
      option.selected = choice.value === selected;
      return option;
    }),
  );
}

function setupLargeText(): void {
  const apply = (on: boolean): void => {
    document.body.classList.toggle('large-text', on);
  };
  largeText.checked = localStorage.getItem(LARGE_TEXT_KEY) === 'true';
  apply(largeText.checked);
  largeText.addEventListener('change', () => {
    apply(largeText.checked);
    captions.relayout();
    localStorage.setItem(LARGE_TEXT_KEY, largeText.checked ? 'true' : 'false');
  });
}

async function loadConfig(): Promise<void> {
  const query = new URLSearchParams(window.location.search);
  roomInput.value = query.get('room') ?? roomInput.value;
  try {
    const config = await fetchConfig();
    languages = config.languages;
    useSupportedLanguages(languages.map((language) => language.code));
    accessCodeRequired = config.accessCodeRequired;
    agentName = config.agentName;
    detectLanguage = config.detectLanguage;
    const covered = config.detectedLanguages.map(nameOf);
    detectedNames.textContent = covered.length > 0 ? ` (${covered.join(', ')})` : '';
    if (invite !== undefined) applyInvite(invite, config.roomPrefix);
    accessCodeRequired &&= invite === undefined;
  } catch (error) {
    joinError.textContent = error instanceof ApiError ? error.message : 'The page could not start. Reload it.';
    return;
  }
  chosenLanguage =
    canonicalLanguage(invite?.language) ??
    canonicalLanguage(query.get('language')) ??
    canonicalLanguage(navigator.language) ??
    'es';
  fillOptions(hearSelect, new Set(), chosenLanguage);
  fillJoinLanguages();
  show(accessCodeField, accessCodeRequired);
  joinButton.disabled = false;
}

function validateForm(): string | undefined {
  if (!ROOM_PATTERN.test(roomInput.value.trim())) {
    roomInput.focus();
    return 'room: 1–64 letters, digits, - or _';
  }
  if (nameInput.value.trim() === '') {
    nameInput.focus();
    return 'name: please say who you are';
  }
  if (accessCodeRequired && accessCodeInput.value === '') {
    accessCodeInput.focus();
    return 'access code required';
  }
  return undefined;
}

async function join(): Promise<void> {
  joinError.textContent = '';
  const invalid = validateForm();
  if (invalid !== undefined) {
    joinError.textContent = invalid;
    return;
  }
  const role = formRole();
  const language = languageSelect.value;
  const detected = role !== 'listener' && language === DETECT;
  const hear = detected ? hearSelect.value : language; // what this person hears
  joinButton.disabled = true;
  try {
    const grant = await requestToken({
      room: roomInput.value.trim(),
      name: nameInput.value.trim(),
      role,
      language,
      hear: detected ? hear : undefined,
      accessCode: accessCodeRequired ? accessCodeInput.value : undefined,
      invite: invite?.token,
    });
    await startSession(grant.url, grant.token, grant.role, hear, detected);
    if (grant.hostKey !== undefined && current !== undefined) {
      current.host = new HostPanel(current.room, grant.hostKey, languages);
    }
  } catch (error) {
    joinError.textContent =
      error instanceof ApiError ? error.message : 'Could not connect to the room. Try again in a moment.';
    endSession();
  } finally {
    joinButton.disabled = false;
  }
}

/** `language`: the language this person hears; `detected`: a speaker whose language the interpreter detects
 * (the language switch then sets what they hear, `interpret_to`, not what they speak). */
async function startSession(
  url: string,
  token: string,
  role: Role,
  language: string,
  detected: boolean,
): Promise<void> {
  const room = new Room({ adaptiveStream: false });
  // the views are made below; the first look at the room comes once it is connected
  const interpreters = new Interpreters(room, agentName, () => onInterpretersChanged());
  const ownVoice = new OwnVoice(room, role === 'speaker'); // the speaker's consent; who is heard in their own
  current = { room, interpreters, ownVoice };
  window.interpreterPage = { room };
  const status = new StatusView(room, interpreters);
  captions.clear();
  transcript.start(roomInput.value.trim());
  languageError.textContent = '';
  const hearing = byId('hearing', HTMLElement);
  const listening = new Listening(room, interpreters, byId('audio', HTMLElement), hearing, nameOf, language);
  listening.setOriginalVolume(Number(originalVolume.value));
  const names = new Map<string, string>(); // identity -> name as this page first saw it (renames are not followed)
  const boundNames = new Map<string, string>(); // identity -> name the interpreter's captions give

  const remember = (participant: Participant): void => {
    if (participant.name && !names.has(participant.identity)) names.set(participant.identity, participant.name);
  };
  const refreshLanguages = (): void => {
    fillOptions(languageSwitch, interpretedLanguages(interpreters.live), listening.currentLanguage);
  };
  const onParticipantsChanged = (): void => {
    status.showAgent();
    refreshLanguages();
    ownVoice.update(interpreters.live);
  };
  /** An interpreter came, or went (stale or left): play the live ones' tracks, say what the room has. */
  function onInterpretersChanged(): void {
    if (interpreters.presence === 'reconnecting') {
      captions.letGoOfUnfinished();
      transcript.letGoOfUnfinished();
    }
    listening.reconcile();
    listening.applyVolumes();
    onParticipantsChanged();
  }
  room
    .on(RoomEvent.ParticipantConnected, (participant) => {
      remember(participant);
      onParticipantsChanged();
    })
    .on(RoomEvent.ParticipantDisconnected, onParticipantsChanged)
    .on(RoomEvent.ParticipantAttributesChanged, (changed) => {
      // a heartbeat changes nothing shown (the language list is not rebuilt under an open menu every second)
      if (!onlyHeartbeat(changed)) onParticipantsChanged();
    })
    .on(RoomEvent.ParticipantNameChanged, (_name, participant) => remember(participant));

  room.registerTextStreamHandler(TOPIC_TRANSCRIPTION, (reader, sender) => {
    void showCaption(reader, sender.identity);
  });

  async function showCaption(reader: TextStreamReader, senderIdentity: string): Promise<void> {
    const attributes = reader.info.attributes ?? {};
    const segmentId = attributes[ATTR_SEGMENT_ID];
    if (!segmentId) return;
    let text: string;
    try {
      text = await reader.readAll();
    } catch {
      return; // cut off mid-stream (the sender left): never complete, so not shown
    }
    const translatedFrom = attributes[ATTR_SPEAKER];
    const sender = room.getParticipantByIdentity(senderIdentity);
    if (translatedFrom !== undefined && sender?.isAgent !== true) return; // only agents interpret
    const kind = translatedFrom !== undefined || sender?.isAgent === true ? 'translation' : 'source';
    const captionLanguage = canonicalLanguage(attributes.language) ?? attributes.language ?? '';
    if (kind === 'translation' && !sameLanguage(captionLanguage, listening.currentLanguage)) return;
    const speakerIdentity = kind === 'translation' ? (translatedFrom ?? senderIdentity) : senderIdentity;
    const boundName = attributes[ATTR_SPEAKER_NAME];
    if (kind === 'translation' && boundName) boundNames.set(speakerIdentity, boundName);
    const speaker = room.getParticipantByIdentity(speakerIdentity);
    if (speaker !== undefined) remember(speaker);
    // a speaker with no `language` set: the interpreter detected the language of these words
    const languageDetected = kind === 'source' && speaker !== undefined && !speaker.attributes[ATTR_LANGUAGE];
    if (languageDetected && captionLanguage !== '') listening.noteDetected(speakerIdentity, captionLanguage);
    const update = {
      segmentId,
      sentence: attributes[ATTR_SENTENCE] || undefined,
      final: attributes[ATTR_FINAL] === 'true',
      kind,
      language: captionLanguage,
      languageName: nameOf(captionLanguage),
      detected: languageDetected,
      speaker: speakerIdentity,
      speakerName: boundNames.get(speakerIdentity) || names.get(speakerIdentity) || 'A speaker',
      text,
      sentAt: reader.info.timestamp,
    } as const;
    captions.update(update);
    transcript.note(update);
  }

  const speaking = role !== 'listener' ? new Speaking(room) : undefined;
  languageSwitchLabel.textContent = languageLabelFor(role, detected);
  languageSwitch.onchange = () => {
    const chosen = languageSwitch.value;
    listening.setLanguage(chosen);
    refreshLanguages();
    const change =
      speaking !== undefined && !detected
        ? speaking.setSpokenLanguage(chosen)
        : room.localParticipant.setAttributes({ interpret_to: chosen });
    languageError.textContent = '';
    change.catch(() => {
      languageError.textContent = 'The room did not take the new language. Check the connection and pick it again.';
    });
  };
  originalVolume.oninput = () => {
    const percent = Number(originalVolume.value);
    originalVolumeValue.textContent = percent === 0 ? 'off' : `${percent}%`;
    listening.setOriginalVolume(percent);
  };
  room.on(RoomEvent.Disconnected, () => {
    leaveButton.textContent = 'Back to the join form';
    status.showAudioGate();
  });

  await room.connect(url, token, { autoSubscribe: false });
  remember(room.localParticipant);
  for (const participant of room.remoteParticipants.values()) remember(participant);
  interpreters.look();
  listening.reconcile();
  onParticipantsChanged();
  show(form, false);
  show(session, true);
  leaveButton.textContent = 'Leave';
  languageSwitch.focus();
  if (speaking !== undefined) await speaking.setMicrophone(true);
}

function endSession(): void {
  const ended = current;
  current = undefined;
  if (ended !== undefined) {
    ended.interpreters.close();
    ended.host?.close();
    ended.ownVoice.close();
    ended.room.removeAllListeners();
    void stopListening(ended.room).then(() => ended.room.disconnect());
  }
  byId('audio', HTMLElement).replaceChildren();
  show(byId('mic-field', HTMLElement), false);
  show(session, false);
  show(form, true);
}

/** Tell the room at once that this page plays nothing any more (its leaving reaches the interpreter only with
 * the server's next batch of a listener's updates, up to 3 s later), within half a second. */
async function stopListening(room: RoomType): Promise<void> {
  if (room.state !== ConnectionState.Connected) return;
  const said = room.localParticipant.setAttributes({ [ATTR_LISTENING_TO]: LISTENING_TO_NONE }).catch(() => {});
  await Promise.race([said, new Promise((resolve) => setTimeout(resolve, 500))]);
}

window.addEventListener('resize', () => captions.relayout());
window.addEventListener('pagehide', () => {
  if (current !== undefined) void stopListening(current.room); // a closed tab: sent if the socket still can
});
roleSelect.addEventListener('change', () => fillJoinLanguages());
languageSelect.addEventListener('change', () => {
  if (languageSelect.value !== DETECT) chosenLanguage = languageSelect.value;
  showHearField();
});
form.addEventListener('submit', (event) => {
  event.preventDefault();
  void join();
});
leaveButton.addEventListener('click', () => {
  endSession();
  joinButton.focus();
});
setupLargeText();
void loadConfig();
