"""Stand-in for dbt's `adapter` when sqlfluff renders the models with its jinja
templater (see /.sqlfluff): a relation named by its identifier."""


def get_relation(database=None, schema=None, identifier=None):
    return identifier
