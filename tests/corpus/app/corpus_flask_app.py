"""A minimal Flask application with Flask-SQLAlchemy and Flask-Migrate; the URL comes from the environment."""

import os

from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["CORPUS_FLASK_DATABASE_URL"]
db = SQLAlchemy(app)
migrate = Migrate(app, db)
