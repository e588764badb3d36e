"""cafex-serve through the official OpenAI Python client (tests/serve/run.sh starts the
server): models, completions, streaming with usage, n, seeds, logprobs, echo, and the
client's typed errors for bad requests, a wrong model and a wrong key. Exits 1 naming
the first check that failed."""
import argparse
import sys

import openai


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--api-key", required=True)
    p.add_argument("--model", required=True)
    a = p.parse_args()
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{a.port}/v1", api_key=a.api_key,
                           max_retries=0, timeout=60)
    failures = []

    def check(cond, what):
        print(("ok   " if cond else "FAIL ") + what)
        if not cond:
            failures.append(what)

    models = client.models.list()
    check([m.id for m in models.data] == [a.model], "models.list names the served model")
    check(client.models.retrieve(a.model).id == a.model, "models.retrieve")

    r = client.completions.create(model=a.model, prompt=[1, 2, 3], max_tokens=5,
                                  temperature=0)
    check(r.object == "text_completion", "object is text_completion")
    check(r.id.startswith("cmpl-"), "id starts with cmpl-")
    check(len(r.choices) == 1 and r.choices[0].finish_reason == "length",
          "one choice, finish_reason length")
    greedy = r.choices[0].model_extra.get("token_ids")
    check(isinstance(greedy, list) and len(greedy) == 5, "token_ids holds 5 tokens")
    check(r.choices[0].text == "", "text is empty (no tokenizer)")
    check(r.usage.prompt_tokens == 3 and r.usage.completion_tokens == 5
          and r.usage.total_tokens == 8, "usage")

    stream = client.completions.create(model=a.model, prompt=[1, 2, 3], max_tokens=5,
                                       temperature=0, stream=True,
                                       stream_options={"include_usage": True})
    streamed, usage, finish, objects = [], None, None, set()
    for chunk in stream:
        objects.add(chunk.object)
        for ch in chunk.choices:
            streamed += ch.model_extra.get("token_ids", [])
            finish = ch.finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage
    check(objects == {"text_completion"}, "every chunk is a text_completion")
    check(streamed == greedy, "streamed tokens equal the non-streamed ones")
    check(finish == "length", "the last chunk carries finish_reason")
    check(usage is not None and usage.completion_tokens == 5, "stream usage chunk")

    seeded = dict(model=a.model, prompt=[[1, 2], [3]], n=2, seed=5, temperature=1.0,
                  max_tokens=4)
    s1 = client.completions.create(**seeded)
    s2 = client.completions.create(**seeded)
    ids = lambda resp: [c.model_extra["token_ids"] for c in resp.choices]
    check(len(s1.choices) == 4 and [c.index for c in s1.choices] == [0, 1, 2, 3],
          "2 prompts x n=2: 4 choices indexed 0..3")
    check(ids(s1) == ids(s2), "the same seed gives the same tokens")
    check(s1.usage.completion_tokens == 16, "usage counts every choice")

    lp = client.completions.create(model=a.model, prompt=[4, 5], max_tokens=3,
                                   temperature=0, logprobs=2)
    l = lp.choices[0].logprobs
    check(l is not None and len(l.token_logprobs) == 3 and len(l.top_logprobs[0]) == 2
          and all(v <= 0 for v in l.token_logprobs), "logprobs: 3 tokens, top 2")
    check(l.tokens[0] == f"token_id:{lp.choices[0].model_extra['token_ids'][0]}",
          "logprobs tokens are token_id:N")

    echo = client.completions.create(model=a.model, prompt=[7, 8], max_tokens=2, echo=True)
    check(echo.choices[0].model_extra.get("prompt_token_ids") == [7, 8], "echo")

    def raises(kind, what, **kw):
        try:
            client.completions.create(**kw)
        except kind as e:
            check(True, what + f" ({e.status_code}, code {e.code!r}, param {e.param!r})")
            return e
        except Exception as e:  # noqa: BLE001
            check(False, what + f": got {type(e).__name__}: {e}")
            return None
        check(False, what + ": no error")
        return None

    e = raises(openai.BadRequestError, "top_p out of range is a 400", model=a.model,
               prompt=[1], top_p=5)
    check(e is not None and e.code == "invalid_value" and e.param == "top_p",
          "the 400 names the field")
    e = raises(openai.BadRequestError, "a text prompt is a 400", model=a.model, prompt="hi")
    check(e is not None and "tokenizer" in str(e), "the 400 says a tokenizer is needed")
    raises(openai.BadRequestError, "presence_penalty is refused", model=a.model, prompt=[1],
           presence_penalty=1.0)
    raises(openai.NotFoundError, "an unknown model is a 404", model="nope", prompt=[1])
    bad = openai.OpenAI(base_url=f"http://127.0.0.1:{a.port}/v1", api_key="wrong",
                        max_retries=0, timeout=30)
    try:
        bad.models.list()
        check(False, "a wrong key is refused")
    except openai.AuthenticationError as e:
        check(e.status_code == 401, "a wrong key is a 401")

    if failures:
        print(f"{len(failures)} check(s) failed: {failures}", file=sys.stderr)
        return 1
    print("all OpenAI client checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
