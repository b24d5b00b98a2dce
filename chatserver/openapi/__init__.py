"""The OpenAPI document: schemas, operations per named route, and request validation from them.

The served document (`GET /openapi.json`) and the request-body validation use the same schemas,
so what is documented is what is enforced.
"""
