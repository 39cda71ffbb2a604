"""`nemo-vtp serve`: the model it serves and the limits every request is held to.

The limits are the server's defence against a hostile client on the network it listens on: an API
key, a body cap, a token budget, a pixel cap checked before decoding, bounded decodes, no local
files unless a root is named, a connection cap and read deadlines (docs/guarantees.md, "Server").
"""

from typing import Literal

from pydantic import Field

from nemo_vtp.config.base import Section
from nemo_vtp.config.data import DataConfig

API_KEY_ENV = "NEMO_VTP_API_KEY"  # env var read when --api-key is not given (vLLM's is VLLM_API_KEY)


class ServeConfig(Section):
    host: str = "127.0.0.1"  # bind address; loopback unless the server is meant to be reached from elsewhere
    port: int = Field(8000, ge=0, le=65535)  # TCP port; 0 picks a free one
    device: str = "cpu"  # torch device of the engine, e.g. cpu or cuda
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"  # engine weights; auto: bfloat16 on GPU, float32 on CPU
    max_batch: int = Field(64, ge=1)  # sequences per forward (prompts x n); also the largest `n` a request may ask
    max_tokens: int = Field(256, ge=1)  # max_tokens of a request that sets none (cut to what the context leaves)
    served_model_name: str | None = None  # model id to report and accept; None: the model folder's name
    api_key: str | None = None  # bearer token every route but /health requires; None: no authentication
    max_model_len: int | None = Field(None, ge=2)  # prompt + completion tokens; None: the model's max_position_embeddings
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)  # request body cap, bytes (images included); 413 above
    # raw image area, pixels, read from the header before any decoding: the data loader's limit
    max_image_pixels: int = Field(DataConfig.model_fields["max_image_pixels"].default, ge=1)
    max_images_per_request: int = Field(8, ge=0)  # images in one request
    max_concurrent_decodes: int = Field(2, ge=1)  # image decodes running at once over all requests
    allowed_local_media_path: str | None = None  # folder local image paths may be read from; None: no local files
    max_connections: int = Field(32, ge=1)  # open connections; beyond it the oldest idle one is closed, else 503
    request_timeout_s: float = Field(10.0, gt=0)  # seconds to receive one request (headers, body) or send a reply
