"""The PostgreSQL clients BI stacks are built on, against `lakescore serve`.

Usage: postgres_clients.py PORT ENGINEER_PASSWORD ANALYST_PASSWORD

Run by tests/end_to_end/serve_clients.rs on a served project with curated.customers
(200 rows), raw.accounts (analysts may not read it) and scored.churn. Needs sqlalchemy,
psycopg2, psycopg (3) and pandas; .ci/run installs them into a virtual environment and
sets LAKESCORE_TEST_CLIENTS_PYTHON. Every check asserts what the client got back; the
first failure ends the run with its name.
"""

import csv
import io
import sys

import pandas
import psycopg
import psycopg2
import sqlalchemy
from sqlalchemy import inspect, text

PORT, ENGINEER_PASSWORD, ANALYST_PASSWORD = sys.argv[1], sys.argv[2], sys.argv[3]
CUSTOMER_COLUMNS = [
    "customer_id",
    "logins",
    "contract",
    "churned",
    "_source_file",
    "_source_row",
    "_ingest_batch",
    "_ingested_at",
]
checks = []


def check(name):
    def register(function):
        checks.append((name, function))
        return function

    return register


def dsn(user="engineer", password=ENGINEER_PASSWORD):
    return f"host=127.0.0.1 port={PORT} user={user} password={password} dbname=lakehouse"


def engine(dialect, user="engineer", password=ENGINEER_PASSWORD):
    return sqlalchemy.create_engine(
        f"postgresql+{dialect}://{user}:{password}@127.0.0.1:{PORT}/lakehouse"
    )


for dialect in ["psycopg2", "psycopg"]:

    @check(f"sqlalchemy+{dialect}: connect and inspect the lakehouse")
    def sqlalchemy_inspects(dialect=dialect):
        lakehouse = engine(dialect)
        with lakehouse.connect() as connection:
            version = connection.execute(text("select version()")).scalar()
            assert version.startswith("PostgreSQL 16."), version
            assert lakehouse.dialect.server_version_info[0] == 16
        inspector = inspect(lakehouse)
        assert inspector.default_schema_name == "public", inspector.default_schema_name
        schemas = inspector.get_schema_names()
        assert {"curated", "scored", "raw"} <= set(schemas), schemas
        assert inspector.get_table_names(schema="curated") == ["customers"]
        assert inspector.has_table("customers", schema="curated")
        assert not inspector.has_table("missing", schema="curated")
        columns = inspector.get_columns("customers", schema="curated")
        assert [c["name"] for c in columns] == CUSTOMER_COLUMNS, columns
        types = {c["name"]: str(c["type"]) for c in columns}
        assert types["logins"] == "DOUBLE PRECISION", types
        assert types["churned"] == "BOOLEAN", types
        assert types["_source_row"] == "BIGINT", types
        assert types["_ingested_at"] == "TIMESTAMP", types
        assert all(c["default"] is None for c in columns)
        assert inspector.get_pk_constraint("customers", schema="curated")["constrained_columns"] == []
        assert inspector.get_foreign_keys("customers", schema="curated") == []
        assert inspector.get_indexes("customers", schema="curated") == []
        assert inspector.get_unique_constraints("customers", schema="curated") == []
        assert inspector.get_check_constraints("customers", schema="curated") == []
        assert inspector.get_table_comment("customers", schema="curated") == {"text": None}
        # Descriptions: the [[model]]'s of its scored table, lakescore's of the columns.
        comment = inspector.get_table_comment("churn", schema="scored")
        assert comment == {"text": "Churn risk of every customer"}, comment
        described = {c["name"]: c["comment"] for c in inspector.get_columns("churn", schema="scored")}
        assert described["prediction_id"].startswith("Stable id of this prediction"), described
        assert described["customer_id"] == "Key of the scored row in the source table (customer_id)"

    @check(f"sqlalchemy+{dialect}: Table autoload and pandas.read_sql_table")
    def autoload_and_pandas(dialect=dialect):
        lakehouse = engine(dialect)
        table = sqlalchemy.Table(
            "customers", sqlalchemy.MetaData(), schema="curated", autoload_with=lakehouse
        )
        assert list(table.c.keys()) == CUSTOMER_COLUMNS
        with lakehouse.connect() as connection:
            yearly = connection.execute(
                sqlalchemy.select(sqlalchemy.func.count()).where(table.c.contract == "yearly")
            ).scalar()
        frame = pandas.read_sql_table("customers", lakehouse, schema="curated")
        assert frame.shape == (200, len(CUSTOMER_COLUMNS)), frame.shape
        assert (frame["contract"] == "yearly").sum() == yearly == 133, yearly
        scored = pandas.read_sql(
            "select customer_id, probability, top_features from scored.churn order by customer_id",
            lakehouse,
        )
        assert len(scored) == 200
        features = scored["top_features"].iloc[0]
        assert isinstance(features, list) and {f["feature"] for f in features} == {
            "logins",
            "contract",
        }, features
        assert all(isinstance(f["contribution"], float) for f in features), features

    @check(f"sqlalchemy+{dialect}: nested transactions, search_path, settings")
    def sessions(dialect=dialect):
        lakehouse = engine(dialect)
        with lakehouse.connect() as connection:
            with connection.begin():
                with connection.begin_nested():
                    count = connection.execute(text("select count(*) from curated.customers"))
                    assert count.scalar() == 200
            connection.execute(text("set search_path to scored, curated"))
            assert connection.execute(text("select count(*) from churn")).scalar() == 200
            assert connection.execute(text("select count(*) from customers")).scalar() == 200
            assert connection.execute(text("select current_schema()")).scalar() == "scored"
            path = connection.execute(text("select current_setting('search_path')")).scalar()
            assert path == "scored, curated", path
            assert connection.execute(text("show search_path")).scalar() == "scored, curated"


@check("psycopg2: parameters, a named cursor paging every row, COPY, json lists")
def psycopg2_features():
    connection = psycopg2.connect(dsn())
    cursor = connection.cursor()
    cursor.execute(
        "select count(*) from curated.customers where logins >= %s and contract = %s",
        (10, "yearly"),
    )
    # The served customers: logins (i * 7) % 40, monthly when i % 3 == 0.
    expected = sum(1 for i in range(200) if (i * 7) % 40 >= 10 and i % 3 != 0)
    assert cursor.fetchone() == (expected,), "parameters"
    named = connection.cursor("pages")
    named.itersize = 30
    named.execute("select customer_id from curated.customers order by customer_id")
    ids = [row[0] for row in named]
    assert ids == [f"C{i:04}" for i in range(200)], ids[:3]
    named.close()
    exported = io.StringIO()
    cursor.copy_expert(
        "COPY (select customer_id, logins, contract from curated.customers order by 1 limit 3) "
        "TO STDOUT WITH CSV HEADER",
        exported,
    )
    records = list(csv.reader(io.StringIO(exported.getvalue())))
    assert records[0] == ["customer_id", "logins", "contract"], records
    assert [(r[0], float(r[1]), r[2]) for r in records[1:]] == [
        ("C0000", 0.0, "monthly"),
        ("C0001", 7.0, "yearly"),
        ("C0002", 14.0, "yearly"),
    ], records
    cursor.execute("select top_features from scored.churn where customer_id = 'C0001'")
    features = cursor.fetchone()[0]
    assert {f["feature"] for f in features} == {"logins", "contract"}, features
    strengths = [abs(f["contribution"]) for f in features]
    assert strengths == sorted(strengths, reverse=True), features
    connection.rollback()
    connection.close()


@check("psycopg 3: a named cursor, COPY, binary results, json lists")
def psycopg3_features():
    with psycopg.connect(dsn()) as connection:
        with connection.cursor(name="pages") as named:
            named.itersize = 64
            named.execute("select customer_id, logins from curated.customers order by customer_id")
            assert named.description[0].name == "customer_id"
            rows = list(named)
        assert len(rows) == 200 and rows[0] == ("C0000", 0.0), rows[:2]
        connection.rollback()
        with connection.cursor().copy(
            "COPY curated.customers (customer_id, churned) TO STDOUT"
        ) as copy:
            exported = b"".join(bytes(chunk) for chunk in copy)
        lines = exported.decode().splitlines()
        assert len(lines) == 200 and lines[0] == "C0000\tt", lines[:2]
        binary = connection.cursor(binary=True)
        binary.execute(
            "select customer_id, logins, churned from curated.customers where customer_id = %s",
            ("C0002",),
        )
        assert binary.fetchone() == ("C0002", 14.0, False)
        binary.execute("select top_features from scored.churn where customer_id = 'C0002'")
        features = binary.fetchone()[0]
        assert isinstance(features, list) and features[0].keys() == {
            "feature",
            "value",
            "contribution",
        }, features


@check("analysts: grants hold for inspection, cursors and COPY")
def analyst_grants():
    inspector = inspect(engine("psycopg", "analyst", ANALYST_PASSWORD))
    assert "raw" not in inspector.get_schema_names(), inspector.get_schema_names()
    with psycopg.connect(dsn("analyst", ANALYST_PASSWORD)) as connection:
        for statement in [
            "select * from raw.accounts",
            "copy raw.accounts to stdout",
            "declare c cursor for select * from raw.accounts",
        ]:
            try:
                connection.execute(statement)
            except psycopg.errors.InsufficientPrivilege as denied:
                assert "raw.accounts" in str(denied), denied
                connection.rollback()
            else:
                raise AssertionError(f"{statement} was not refused")


for name, function in checks:
    try:
        function()
    except Exception as failure:
        print(f"FAILED {name}: {type(failure).__name__}: {failure}", file=sys.stderr)
        raise
    print(f"ok {name}")
print(f"{len(checks)} client checks passed")
