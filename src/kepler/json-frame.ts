/**
 * Finds where one JSON object ends in a byte stream. Kepler's sidecar client writes its request
 * with no length prefix and no newline and keeps the connection open for the reply, so the end
 * of the request is the brace that closes the top-level object. Works on bytes: the characters
 * that matter ({ } [ ] " \) never occur inside a multi-byte UTF-8 sequence.
 */
export class JsonFrame {
  #depth = 0;
  #inString = false;
  #escaped = false;
  #started = false;

  /**
   * Scans the next chunk. Returns the index just past the object's last byte once it is
   * complete, -1 while more is needed; throws when the stream does not start with an object.
   */
  push(chunk: Uint8Array): number {
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i] as number;
      if (!this.#started) {
        if (byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09) continue;
        if (byte !== 0x7b) throw new Error('the request is not a JSON object');
        this.#started = true;
      }
      if (this.#inString) {
        if (this.#escaped) this.#escaped = false;
        else if (byte === 0x5c) this.#escaped = true;
        else if (byte === 0x22) this.#inString = false;
      } else if (byte === 0x22) {
        this.#inString = true;
      } else if (byte === 0x7b || byte === 0x5b) {
        this.#depth++;
      } else if (byte === 0x7d || byte === 0x5d) {
        this.#depth--;
        if (this.#depth === 0) return i + 1;
      }
    }
    return -1;
  }
}
