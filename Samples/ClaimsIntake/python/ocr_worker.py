"""OCR worker: Tesseract (Debian's libtesseract5, tesseract-ocr-eng) loaded once per process.

The engine (TessBaseAPI, with the English LSTM model) is created and initialised when the process
starts and reused for every page, through Tesseract's C API (ctypes): no per-call process start and
no per-call model load. Input: {"claimId", "scan": path of a PNG}; output: {"text", "confidence"}.
"""
import atexit
import ctypes
import ctypes.util
import os

from PIL import Image

from worker_protocol import NonRetryable, serve, sha256_file

TESSDATA_CANDIDATES = ["/usr/share/tesseract-ocr/5/tessdata", "/usr/share/tesseract-ocr/4.00/tessdata"]


def load():
    library = ctypes.util.find_library("tesseract") or "libtesseract.so.5"
    tess = ctypes.CDLL(library)
    tess.TessVersion.restype = ctypes.c_char_p
    tess.TessBaseAPICreate.restype = ctypes.c_void_p
    tess.TessBaseAPIInit3.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
    tess.TessBaseAPISetImage.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int,
                                         ctypes.c_int, ctypes.c_int]
    tess.TessBaseAPISetPageSegMode.argtypes = [ctypes.c_void_p, ctypes.c_int]
    tess.TessBaseAPIGetUTF8Text.argtypes = [ctypes.c_void_p]
    tess.TessBaseAPIGetUTF8Text.restype = ctypes.c_void_p
    tess.TessBaseAPIMeanTextConf.argtypes = [ctypes.c_void_p]
    tess.TessDeleteText.argtypes = [ctypes.c_void_p]
    tess.TessBaseAPIClear.argtypes = [ctypes.c_void_p]
    tess.TessBaseAPIDelete.argtypes = [ctypes.c_void_p]

    tessdata = os.environ.get("TESSDATA_PREFIX") or next(
        (path for path in TESSDATA_CANDIDATES if os.path.exists(os.path.join(path, "eng.traineddata"))), None)
    if tessdata is None:
        raise SystemExit("eng.traineddata not found (install Debian's tesseract-ocr-eng, or set TESSDATA_PREFIX)")
    api = tess.TessBaseAPICreate()
    if tess.TessBaseAPIInit3(api, tessdata.encode(), b"eng") != 0:
        raise SystemExit(f"Tesseract could not load eng from {tessdata}")
    atexit.register(tess.TessBaseAPIDelete, api)  # frees the model's caches quietly at exit
    tess.TessBaseAPISetPageSegMode(api, 6)  # one uniform block of text: a scanned form
    version = tess.TessVersion().decode()
    model = {"name": "tesseract-eng", "version": version,
             "weights": {"eng.traineddata": sha256_file(os.path.join(tessdata, "eng.traineddata"))},
             "metadata": {"engine": "libtesseract via ctypes", "psm": "6"}}

    def handle(request):
        path = request.get("scan")
        if not isinstance(path, str) or not os.path.isfile(path):
            raise NonRetryable(f"claim {request.get('claimId')}: scan {path!r} is not a readable file")
        image = Image.open(path).convert("L")
        width, height = image.size
        tess.TessBaseAPISetImage(api, image.tobytes(), width, height, 1, width)
        pointer = tess.TessBaseAPIGetUTF8Text(api)
        text = ctypes.string_at(pointer).decode("utf-8", "replace")
        tess.TessDeleteText(pointer)
        confidence = tess.TessBaseAPIMeanTextConf(api)
        tess.TessBaseAPIClear(api)
        return {"text": text.strip(), "confidence": confidence}

    return model, handle


if __name__ == "__main__":
    serve(load)
