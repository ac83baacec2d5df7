"""The tiny models' tokenizer: a Llama-like byte-level BPE trained on the spot (exact round trips)."""

from __future__ import annotations

from collections.abc import Iterable

# Token ids fixed by the order of the special tokens given to the BPE trainer,
# matching Llama's: <unk> = 0, <s> = 1, </s> = 2.
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2

#: Generic SQL and English text for tokenizers of random models.
DEFAULT_CORPUS: tuple[str, ...] = (
    "### Task\nGenerate a SQL query to answer [QUESTION]{question}[/QUESTION]\n\n"
    "### Instructions\n- If you cannot answer the question with the available database schema, "
    "return 'I do not know'\n- Remember that revenue is price multiplied by quantity\n\n"
    "### Database Schema\nThe query will run on a database with the following schema:\n",
    "### Answer\nGiven the database schema, here is the SQL query that answers "
    "[QUESTION]{question}[/QUESTION]\n[SQL]\n",
    "CREATE TABLE customers (\n  id integer PRIMARY KEY,\n  name text NOT NULL,\n"
    "  email text UNIQUE,\n  created_at timestamp with time zone DEFAULT now()\n);\n",
    "CREATE TABLE orders (\n  id bigserial PRIMARY KEY,\n  customer_id integer REFERENCES customers(id),\n"
    "  total numeric(12,2),\n  status varchar(20) CHECK (status IN ('open', 'paid', 'shipped')),\n"
    "  ordered_on date\n);\n",
    "CREATE TABLE products (id int PRIMARY KEY, name text, price numeric, category text);\n"
    "CREATE TABLE order_items (order_id bigint, product_id int, quantity int);\n",
    " SELECT count(*) FROM orders;\n[/SQL]",
    " SELECT c.name, sum(o.total) AS revenue FROM customers c JOIN orders o ON o.customer_id = c.id "
    "GROUP BY c.name ORDER BY revenue DESC LIMIT 10;\n[/SQL]",
    " SELECT p.category, avg(p.price) FROM products p WHERE p.price > 100 GROUP BY 1 HAVING count(*) >= 2;\n[/SQL]",
    " SELECT DISTINCT status FROM orders WHERE ordered_on BETWEEN '2024-01-01' AND '2024-12-31';\n[/SQL]",
    "SELECT o.id, COALESCE(sum(i.quantity), 0) FROM orders AS o LEFT JOIN order_items AS i "
    "ON i.order_id = o.id GROUP BY o.id;",
    "How many orders were placed last month? Which customers spent the most money this year? "
    "What is the average price of the products in each category? List the five newest customers.",
    "The quick brown fox jumps over the lazy dog. PostgreSQL is a powerful, open source "
    "object-relational database system with over 35 years of active development.",
    "Questions in plain English become SQL queries; the extension checks every query before it runs.",
)


def build_tokenizer(corpus: Iterable[str], vocab_size: int, context_length: int):
    """A Llama-like byte-level BPE tokenizer trained on ``corpus``.

    Byte-level BPE makes every string round-trip exactly through encode/decode,
    which exact-match tests rely on; the post-processor adds ``<s>`` like Llama's.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == [UNK_ID, BOS_ID, EOS_ID]
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", BOS_ID)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        # Decoding must give back the exact text: no " ," -> "," clean-up.
        clean_up_tokenization_spaces=False,
        model_max_length=context_length,
    )
