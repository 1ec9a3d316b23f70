"""What a 409 says, by the name of the unique constraint the request broke: add yours here.

Names come from the models' naming convention (app/models/base.py), the same on PostgreSQL and
SQLite; a constraint not named here gets a plain detail by what broke it (app/api/errors.py).
This file is the project's: `cruft update` never changes it ([tool.cruft] in pyproject.toml).
"""

CONFLICT_DETAILS = {
    "uq_tags_item_id": "The item already has a tag of that name",
}
