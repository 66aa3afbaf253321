"""Text: sentencepiece tokenizer (T5 ids) and a T5-style encoder."""
