"""The browser pages: sign-in, sign-up and home (``login``), a user's servers (``user``), the token
page and the admin pages; each calls the same functions as the REST API, with the same rules."""
