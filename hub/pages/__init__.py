"""The browser pages: sign-in, sign-up and home (``login``), a user's servers (``user``), the token
page, the admin pages and projects (``projects``); each calls the same functions as the REST API,
with the same rules."""
