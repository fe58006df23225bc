// The encoding API that both StarlingMonkey (inside the component) and Node
// (under test) provide as globals; TypeScript declares it only in its DOM
// library, which a plugin has no use for.
declare class TextEncoder {
  encode(input?: string): Uint8Array;
}
declare class TextDecoder {
  constructor(label?: string, options?: { fatal?: boolean });
  decode(input?: Uint8Array): string;
}
