/* InferQ console: reading the inputs and outputs of an ONNX file.
 *
 * An ONNX file is a protobuf ModelProto. The "Add model" panel reads just
 * enough of it in the browser (graph → input/output → name, element type,
 * shape) to fill in the manifest's [input] section: the tensor's name,
 * float32/uint8/int32, NCHW or NHWC, and the width and height when they are
 * fixed. Nothing is executed and nothing leaves the page; the server does
 * its own checks when the file is uploaded. A file that is not a protobuf
 * gives an Error with a plain message.
 */
(function () {
  'use strict';
  const InferQ = (window.InferQ = window.InferQ || {});
  const ELEM = { 1: 'float32', 2: 'uint8', 3: 'int8', 6: 'int32', 7: 'int64', 10: 'float16', 11: 'float64' };

  /* Iterates the fields of one protobuf message: [field, wireType, value],
     where value is a number (varint), or a Uint8Array (length-delimited). */
  function* fields(bytes) {
    let i = 0;
    const varint = () => {
      let value = 0;
      let scale = 1;
      for (let n = 0; n < 10; n++) {
        if (i >= bytes.length) throw new Error('the file ends inside a number');
        const b = bytes[i++];
        value += (b & 0x7f) * scale;
        if (b < 0x80) return value;
        scale *= 128;
      }
      throw new Error('a number is too long');
    };
    while (i < bytes.length) {
      const key = varint();
      const field = Math.floor(key / 8);
      const wire = key % 8;
      if (wire === 0) yield [field, wire, varint()];
      else if (wire === 2) {
        const len = varint();
        if (i + len > bytes.length) throw new Error('a field runs past the end of the file');
        yield [field, wire, bytes.subarray(i, i + len)];
        i += len;
      } else if (wire === 1) i += 8;
      else if (wire === 5) i += 4;
      else throw new Error('unexpected protobuf wire type ' + wire);
    }
  }

  const text = (b) => new TextDecoder().decode(b);
  const first = (bytes, want) => {
    for (const [f, , v] of fields(bytes)) if (f === want) return v;
    return undefined;
  };

  /* A ValueInfoProto → {name, dtype, shape: [number|string|null]}. */
  function valueInfo(bytes) {
    const info = { name: '', dtype: null, shape: [] };
    for (const [f, , v] of fields(bytes)) {
      if (f === 1) info.name = text(v);
      if (f !== 2) continue;
      const tensor = first(v, 1); // TypeProto.tensor_type
      if (!tensor) continue;
      for (const [tf, , tv] of fields(tensor)) {
        if (tf === 1) info.dtype = ELEM[tv] || 'type ' + tv;
        if (tf !== 2) continue;
        for (const [df, , dv] of fields(tv)) {
          if (df !== 1) continue;
          let dim = null;
          for (const [k, , x] of fields(dv)) dim = k === 1 ? x : k === 2 ? text(x) : dim;
          info.shape.push(dim);
        }
      }
    }
    return info;
  }

  /* {inputs, outputs, opset} of an ONNX file's bytes. */
  function read(buffer) {
    const bytes = new Uint8Array(buffer);
    if (bytes[0] !== 0x08) throw new Error('this is not an ONNX file (it does not start like a ModelProto)');
    let graph = null;
    let opset = null;
    for (const [f, w, v] of fields(bytes)) {
      if (f === 7 && w === 2) graph = v;
      if (f === 8 && w === 2) {
        const version = first(v, 2);
        const domain = first(v, 1);
        if (!domain || !domain.length) opset = version;
      }
    }
    if (!graph) throw new Error('this ONNX file has no graph');
    const initializers = new Set();
    const inputs = [];
    const outputs = [];
    for (const [f, w, v] of fields(graph)) {
      if (w !== 2) continue;
      if (f === 5) initializers.add(text(first(v, 8) || new Uint8Array()));
      else if (f === 11) inputs.push(valueInfo(v));
      else if (f === 12) outputs.push(valueInfo(v));
    }
    // Old exporters list the weights as inputs too.
    return { inputs: inputs.filter((x) => !initializers.has(x.name)), outputs, opset };
  }

  /* What the manifest's [input] can say about a 4-D image input. */
  function imageInput(info) {
    const s = info.shape;
    const fixed = (d) => (typeof d === 'number' && d > 0 ? d : null);
    const guess = { name: info.name, dtype: info.dtype, layout: null, width: null, height: null };
    if (s.length === 4) {
      if (s[1] === 3 || (s[1] === 1 && s[3] !== 3)) Object.assign(guess, { layout: 'nchw', height: fixed(s[2]), width: fixed(s[3]) });
      else if (s[3] === 3 || s[3] === 1) Object.assign(guess, { layout: 'nhwc', height: fixed(s[1]), width: fixed(s[2]) });
    }
    return guess;
  }

  InferQ.onnx = { read, imageInput };
})();
